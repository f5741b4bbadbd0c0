"""Run identity: which runs are the same experiment (run key), which belong to one cell (cell key), and how a cell
differs from the defaults (variant).

All three are derived here, from one identity dict that ``benchmark.compose.run_identity`` builds from the unresolved
config, so they cannot drift apart:

* ``run_key`` = hash of the identity: a FINISHED run with the same key is reused, never recomputed.
* ``cell_key`` = hash of the identity without the seed: the runs of one cell differ only by their seed, so a sweep
  over ``strategy.frozen_stages=1,3`` (or two checkpoints given to ``source=local_file``) gives two cells, never one
  cell with repeated seeds.
* ``variant`` = the identity's values that differ from the defaults of the same source, target and strategy
  (``frozen_stages=1``, ``budget.epochs=4``, ``weights=model.safetensors@1a2b3c4d``); empty when nothing differs.

File weights enter the identity by content (sha256), never by path: a replaced file is a new run, a moved one is not.

The content keys of cached artefacts (a pretrained source, frozen features, a self-supervised pretraining) are built
here too, each from one ``architecture`` identity (architecture, model arguments, preprocessing), so a model is
named the same way in every key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmark.util import stable_hash

KEY_VERSION = 3
"""Bumped when a change to the harness makes old runs incomparable: every run key changes with it.
2: trainer numerics (accelerator, deterministic, channels_last, compile) and file weights by content.
3: strategies and weights kinds are identified by id and settings, not by the Python class that implements them
(``_target_`` left out, so moving code changes no key); a strategy's ``meta`` block is part of its settings."""

NUMERICS = ("accelerator", "precision", "deterministic", "channels_last", "compile", "fused_optimizer")
"""Trainer settings that change a run's numbers (part of every key). Threads, DataLoader workers, checkpoint
interval and the feature cache (identical metrics, ``tests/test_features.py``) only change its speed. (Threads can
change the last bits of a CPU run's sums; runs of one machine at one thread are identical.)"""

LATER_NUMERICS = {"fused_optimizer": False}
"""``NUMERICS`` added after run keys existed, with the value every run recorded before had: that value leaves the
entry out of the key, so those runs keep their keys and are reused (``trainer.fused_optimizer=false`` reproduces
them); any other value makes a new key."""

LATER_STRATEGY = {"probe": {"head": "sgd"}}
"""Strategy settings added after run keys existed, with the value that reproduces the runs recorded before: the
gradient-descent head every probe had (``linear_probe``, ``ssl_probe``, ``lp_ft``) before probes were solved. At that
value the entry is left out of the key, so ``strategy.probe.head=sgd`` finds those runs again."""


PROBE_SOLVER = 2
"""The solved probe's algorithm, part of the key of every strategy that solves its probe: bumped when a change gives
other solutions for the same settings. 2: features centred even unstandardised (LP-FT), gradient tolerance 1e-6 (1:
uncentred, 1e-8; runs of 1 are not reused)."""


def strategy(node: dict[str, Any]) -> dict[str, Any]:
    """A strategy's identity: its id and settings, a later setting at its earlier value left out
    (``LATER_STRATEGY``); a solved probe carries its solver's version (``PROBE_SOLVER``)."""
    out = {k: v for k, v in node.items() if not (k in LATER_STRATEGY and v == LATER_STRATEGY[k])}
    probe = out.get("probe")
    if isinstance(probe, dict) and probe.get("head", "solved") == "solved":
        out["probe"] = {**probe, "solver": PROBE_SOLVER}
    return out


LATER_BUDGET = {"mode": "fixed", "steps": 0}
"""``budget`` entries added after run keys existed, with the value every earlier run had: left out of the key at that
value, so earlier runs keep their keys (``budget.mode=fixed`` is the budget they all trained under)."""

CONVERGED_ONLY = ("cap_steps", "patience", "min_delta")
"""``budget`` entries that only the converged rule reads: a fixed-mode key leaves them out (they change nothing)."""


def budget(node: dict[str, Any]) -> dict[str, Any]:
    """The budget a run key holds: a later entry at its earlier value left out (``LATER_BUDGET``), and the converged
    rule's settings only when ``mode`` is ``converged``."""
    converged = node.get("mode", "fixed") == "converged"
    return {
        k: v for k, v in node.items()
        if not (k in LATER_BUDGET and v == LATER_BUDGET[k]) and (converged or k not in CONVERGED_ONLY)
    }  # fmt: skip


UNIDENTIFYING = ("version", "seed", "label_budget", "source.id", "target.id", "strategy.id", "strategy.probe.solver")
"""Identity entries a variant never shows: the key versions (the harness's, a solved probe's), the seed (the cell's
replicate axis) and the cell's own tags (source, target, strategy, label budget)."""


@dataclass(frozen=True)
class Keys:
    """A run's identity in MLflow tags: ``run_key``, ``cell_key`` and ``variant``."""

    run_key: str
    cell_key: str
    variant: str


def numerics(trainer: Any) -> dict[str, Any]:
    """The trainer settings a run key holds (``NUMERICS``), a later one left out at its earlier value
    (``LATER_NUMERICS``)."""
    values = {name: getattr(trainer, name) for name in NUMERICS}
    return {k: v for k, v in values.items() if k not in LATER_NUMERICS or v != LATER_NUMERICS[k]}


def keys(identity: dict[str, Any], defaults: dict[str, Any] | None = None, weights_name: str = "file") -> Keys:
    """The run key, cell key and variant of ``identity``. ``defaults`` is the identity of the same source, target
    and strategy with nothing overridden (None: empty variant); ``weights_name`` the file name of file weights, shown
    in the variant only (the keys know the file by content)."""
    if defaults is not None:
        identity = typed_like(identity, defaults)
    cell = {k: v for k, v in identity.items() if k != "seed"}
    shown = "" if defaults is None else variant(identity, defaults, weights_name)
    return Keys(stable_hash(identity), stable_hash(cell), shown)


def typed_like(value: Any, default: Any) -> Any:
    """``value`` with each number in the type its default has: an override keeps the type it was typed in, so
    ``strategy.backbone_lr_scale=1`` is the int 1 where the YAML's default ``1.0`` is a float, and the two would hash
    to two run keys and two cells of bit-identical runs. An int where the default is a float becomes that float, and
    an integral float where the default is an int becomes that int; other values, and entries the defaults lack, are
    left as they are. Runs whose values already had their default's type keep their keys."""
    if isinstance(value, dict) and isinstance(default, dict):
        return {k: typed_like(v, default.get(k)) for k, v in value.items()}
    if isinstance(value, list) and isinstance(default, list) and len(value) == len(default):
        return [typed_like(v, d) for v, d in zip(value, default, strict=True)]
    if isinstance(value, bool) or isinstance(default, bool):
        return value
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def variant(identity: dict[str, Any], defaults: dict[str, Any], weights_name: str = "file") -> str:
    """What tells this cell apart from the default cell of its source, target and strategy, as ``key=value`` parts
    joined by ``", "``: file weights as ``weights=<weights_name>@<first 8 hex of their sha256>``, then the strategy's
    settings without their ``strategy.`` prefix (the strategy is a tag of its own), then the rest in identity order
    (``budget.epochs=4``); a setting the defaults have and the run lacks shows as ``~key``."""
    own, base = _flatten(identity), _flatten(defaults)
    for name, earlier in LATER_NUMERICS.items():  # left out of a key at its earlier value: shown at that value
        own.setdefault(f"trainer.{name}", earlier)
        base.setdefault(f"trainer.{name}", earlier)
    for key, earlier in _flatten({"strategy": LATER_STRATEGY}).items():  # likewise, where the strategy has it
        if key in base:
            own.setdefault(key, earlier)
    weights = identity.get("source", {}).get("weights")
    file_weights = isinstance(weights, dict) and "sha256" in weights
    parts = []
    if file_weights:
        parts.append(f"weights={weights_name}@{weights['sha256'][:8]}")
    order = [*own, *(k for k in base if k not in own)]
    for key in sorted(order, key=lambda k: not k.startswith("strategy.")):  # stable: the strategy's settings first
        if key in UNIDENTIFYING or (file_weights and key.startswith("source.weights.")):
            continue
        if key.startswith("tuning."):  # a study's settings show as one part (the tag tuning_key tells studies apart)
            if "tuning.trials" in own and key == "tuning.trials":
                parts.append(f"tuned={own[key]}x{own.get('tuning.sampler', 'tpe')}")
            continue
        if own.get(key, _ABSENT) == base.get(key, _ABSENT):
            continue
        name = key.removeprefix("strategy.")
        parts.append(f"~{name}" if key not in own else f"{name}={_show(own[key])}")
    return ", ".join(parts)


_ABSENT = object()


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """The sha256 (hex) of a weights file, cached per process by (absolute path, size, mtime) so a sweep hashes a
    large checkpoint once, while a file replaced in place (new size or mtime) is hashed again."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[memo] = h.hexdigest()
    return _DIGESTS[memo]


def architecture(source: Any) -> dict[str, Any]:
    """What builds a source's model and feeds it: architecture, model arguments, preprocessing (a ``SourceSpec``).

    A preprocessing field added after content keys existed enters only when it differs from its default, so the
    keys of the bundled sources (and the pretraining they seed, ``pretrain_key``) stay as they were
    (``tests/test_preprocessing.py`` pins them)."""
    prep = {k: v for k, v in asdict(source.preprocessing).items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}
    return {"arch": source.arch, "model_kwargs": source.model_kwargs, "preprocessing": prep}


LATER_FIELDS = {"interpolation": "bilinear"}
"""``Preprocessing`` fields added later, with the default that leaves them out of ``architecture``."""


def pretrain_key(source: Any) -> str:
    """Content address of a harness-pretrained checkpoint: architecture, dataset config and recipe. It also seeds
    the pretraining, so it must not change for the same source."""
    weights = source.weights
    return stable_hash({**architecture(source), "dataset": weights.dataset_config, "recipe": asdict(weights.recipe)})


def feature_key(source: Any, weights_id: str, target_id: str, target_config: dict[str, Any]) -> str:
    """Content address of a model's frozen features of one target: architecture, weights identity (the kind's
    ``content_id``, or the key of weights a strategy trained itself), target."""
    return stable_hash(
        {**architecture(source), "weights": weights_id, "target": {"id": target_id, "config": target_config}}
    )


def pretraining_key(source: Any, data: dict[str, Any], pretraining: dict[str, Any], seed: int) -> str:
    """Content address of a strategy's own pretraining (SimCLR): architecture, images, its settings, seed."""
    return stable_hash({**architecture(source), "data": data, "pretraining": pretraining, "seed": seed})
