"""Renaming a checkpoint from another codebase into a timm model's names, refusing every guess.

Two ways, both pure functions over dicts of tensors:

* ``apply_key_map``: ordered regex renames (strip ``module.``, ``_blocks.`` -> ``blocks.``...). A rule that renames
  nothing is an error, because a silent no-op rule is how a "mapped" checkpoint ends up loading nothing.
* ``remap_by_order``: give the i-th checkpoint tensor the i-th model name. Two codebases that build the same network
  register its tensors in the same order, so this maps checkpoints whose naming follows no pattern. It is allowed
  only when the tensor counts and every shape agree in order; otherwise it raises, naming the first disagreements.

Neither proves the numbers right: a checkpoint mapped onto an architecture with the same shapes but other numerics
(padding, BatchNorm epsilon) loads cleanly and computes something else. Only an output check against the original
architecture catches that (``tests/test_zoo.py`` does it for the zoo).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import torch

MISMATCHES_SHOWN = 5
"""How many disagreements an error lists: enough to see the pattern (a prefix, an offset), short enough to read."""

Rules = Sequence[tuple[str, str]] | Mapping[str, str]
State = Mapping[str, torch.Tensor]


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def format_mismatches(rows: Sequence[tuple[str, str]], total: int | None = None) -> str:
    """``rows`` of (left, right) descriptions as "left vs right" lines, the first ``MISMATCHES_SHOWN`` of them, and
    how many more there are (``total`` counts them all when ``rows`` was cut short already)."""
    total = len(rows) if total is None else total
    lines = [f"  {left} vs {right}" for left, right in rows[:MISMATCHES_SHOWN]]
    if total > len(lines):
        lines.append(f"  ... and {total - len(lines)} more")
    return "\n".join(lines)


def name_mismatches(state: State, model_state: State) -> list[tuple[str, str]]:
    """Every disagreement by name between a checkpoint and a model's state dict, in the model's order: a tensor the
    checkpoint lacks, one the model lacks, or one whose shape differs. Empty when a strict load would succeed."""
    rows: list[tuple[str, str]] = []
    for name, tensor in model_state.items():
        if name not in state:
            rows.append(("checkpoint: (missing)", f"model: {name} {_shape(tensor)}"))
        elif _shape(state[name]) != _shape(tensor):
            rows.append((f"checkpoint: {name} {_shape(state[name])}", f"model: {name} {_shape(tensor)}"))
    rows.extend(
        (f"checkpoint: {name} {_shape(t)}", "model: (no such tensor)")
        for name, t in state.items()
        if name not in model_state
    )
    return rows


def check_strict(state: State, model_state: State, origin: str) -> None:
    """Raise unless ``state`` would load strictly into ``model_state`` (same names, same shapes), listing the first
    disagreements: the verification every mapped checkpoint still passes before it is used."""
    rows = name_mismatches(state, model_state)
    if rows:
        raise ValueError(
            f"{origin} does not load strictly: {len(rows)} tensors disagree by name or shape; first ones:\n"
            f"{format_mismatches(rows)}"
        )


def _normalise(rules: Rules) -> list[tuple[str, str, re.Pattern[str]]]:
    pairs: Iterable[tuple[str, str]] = rules.items() if isinstance(rules, Mapping) else rules
    compiled = []
    for pair in pairs:
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise ValueError(f"key_map rule {pair!r} is not a (pattern, replacement) pair of strings")
        pattern, replacement = pair
        try:
            compiled.append((pattern, replacement, re.compile(pattern)))
        except re.error as exc:
            raise ValueError(f"key_map rule {pattern!r} is not a valid regular expression: {exc}") from exc
    return compiled


def apply_key_map(state: State, rules: Rules) -> dict[str, torch.Tensor]:
    """``state`` with every key renamed by ``rules`` in order (``re.sub`` of each pattern, each rule seeing the
    previous rule's output). ``rules``: (pattern, replacement) pairs, or a mapping in insertion order, as YAML gives.

    Raises when a rule matches no key (it names the rule and a few keys it was tried on) or when two keys end up
    with one name (a rule that merges tensors would silently drop one of them). Tensors are not copied.
    """
    names = list(state)
    for pattern, replacement, regex in _normalise(rules):
        if not any(regex.search(name) for name in names):
            raise ValueError(
                f"key_map rule {pattern!r} -> {replacement!r} matches no key; the keys at that point begin "
                f"{names[:3]} (a rule that renames nothing is an error, not a no-op)"
            )
        names = [regex.sub(replacement, name) for name in names]
    out: dict[str, torch.Tensor] = {}
    for (old, tensor), new in zip(state.items(), names, strict=True):
        if new in out:
            first = next(o for o, n in zip(state, names, strict=True) if n == new)
            raise ValueError(f"key_map renames both {first!r} and {old!r} to {new!r}; one tensor would be lost")
        out[new] = tensor
    return out


def remap_by_order(state: State, model_state: State) -> dict[str, torch.Tensor]:
    """``state``'s tensors under ``model_state``'s names, position by position (``weights.remap: by_order``).

    Allowed only when both hold the same number of tensors and the i-th shapes agree for every i; otherwise the
    error names the counts and the first pairs (checkpoint name and shape vs model name and shape) that disagree.
    Equal shapes are necessary, not sufficient: two same-shaped tensors in swapped order pass, so a caller verifies
    the result (a role check of the names, or the outputs).
    """
    ours, theirs = list(state.items()), list(model_state.items())
    rows = []
    for i in range(max(len(ours), len(theirs))):
        a, ta = ours[i] if i < len(ours) else ("(none left)", None)
        b, tb = theirs[i] if i < len(theirs) else ("(none left)", None)
        if ta is None or tb is None or _shape(ta) != _shape(tb):
            left = f"checkpoint[{i}] {a} {_shape(ta)}" if ta is not None else f"checkpoint[{i}] {a}"
            right = f"model[{i}] {b} {_shape(tb)}" if tb is not None else f"model[{i}] {b}"
            rows.append((left, right))
    if len(ours) != len(theirs):
        raise ValueError(
            f"remap by_order refused: the checkpoint holds {len(ours)} tensors and the model {len(theirs)}; "
            f"first disagreements in order:\n{format_mismatches(rows)}"
        )
    if rows:
        raise ValueError(
            f"remap by_order refused: {len(rows)} of {len(ours)} tensors differ in shape at the same position; "
            f"first disagreements in order:\n{format_mismatches(rows)}"
        )
    return {name: tensor for (name, _), (_, tensor) in zip(theirs, ours, strict=True)}
