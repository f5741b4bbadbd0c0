"""The documentation's option tables, generated from ``conf/`` so that they cannot go stale.

``python -m benchmark.catalog`` prints them; ``python -m benchmark.catalog --write`` rewrites the generated blocks
(between ``<!-- catalog:NAME -->`` and ``<!-- /catalog -->``) of every page of ``docs/`` that has one (or of the
files given); ``tests/test_readme.py`` fails when a block differs from what this module generates. Each option is
described by its YAML's header comment; a strategy's comparison columns come from its ``meta`` block, a source's
weights from its weights kind.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from hydra.utils import get_class

from benchmark.compose import build_strategy, config, options, raw, strategy_config, weights_kinds
from benchmark.config_path import CONF_DIR
from benchmark.metrics import METRICS

GROUPS = ("source", "target", "strategy", "augment", "trainer", "tracking", "experiment", "scenario")
BLOCK = re.compile(r"(<!-- catalog:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /catalog -->)", re.S)


def header(group: str, option: str) -> str:
    """The YAML's leading comment (Hydra's ``# @package`` line left out), as one line."""
    lines = []
    for line in (CONF_DIR / group / f"{option}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            lines.append(line.lstrip("#").strip())
    return " ".join(lines).replace("|", "\\|").replace("<", "\\<")


def _table(columns: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def groups_table() -> str:
    return _table(["group", "options"], [[f"`{g}`", ", ".join(f"`{o}`" for o in options(g))] for g in GROUPS])


def strategies_table() -> str:
    rows = []
    for sid in options("strategy"):
        node = strategy_config(sid, "the catalog")
        _, meta = build_strategy(sid, node)
        compared = "— (a baseline)" if meta.is_baseline else f"`{meta.baseline}`"
        if meta.reference:
            compared += f", `{meta.reference}`"
        method = str(node._target_).rsplit(".", 1)[-1]
        rows.append([f"`{sid}`", f"`{method}`", compared, f"`{meta.metric or 'verdict.metric'}`",
                     "yes" if meta.uses_source_weights else "no", header("strategy", sid)])  # fmt: skip
    return _table(["id", "method", "compared with", "metric", "source weights", "what it is"], rows)


def sources_table() -> str:
    kinds = {target: kind for kind, target in weights_kinds().items()}
    rows = []
    for sid in options("source"):
        cfg = config([f"source={sid}"], True)
        src = raw(cfg.source)
        weights = dict(src.get("weights") or {})
        target = weights.pop("_target_", "")
        kind = kinds.get(target, get_class(target).kind if target else "none")
        detail = (
            src.get("tag") or weights.get("tag") or weights.get("path") or weights.get("name")
            or cfg.hydra.runtime.choices.get("target@source.weights.dataset")
        )  # fmt: skip
        prep = src.get("preprocessing") or {}
        arch = f"`{src['arch']}`" if src.get("arch") else ("the tag's" if kind == "hub" else "mandatory")
        size = f"{prep['image_size']} px" if prep.get("image_size") else "the model's"  # null: timm's data config
        rows.append([f"`{sid}`", arch, f"`{kind}`", f"`{detail}`" if detail else "", size,
                     header("source", sid)])  # fmt: skip
    return _table(["id", "architecture", "weights", "tag / file / dataset", "input", "what it is"], rows)


def targets_table() -> str:
    return _table(["id", "what it is"], [[f"`{t}`", header("target", t)] for t in options("target")])


COMMANDS = ("benchmark.report.cli", "benchmark.ui", "benchmark.rank")
"""The command lines besides the Hydra app, each with a ``parser()``: their help is the reference."""


def commands_reference() -> str:
    """Each command's ``--help`` (at 110 columns, whatever the terminal), under its name."""
    import importlib

    out = []
    for name in COMMANDS:
        parser = importlib.import_module(name).parser()
        parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=110)
        out += [f"### `{parser.prog}`\n", "```text", parser.format_help().rstrip(), "```\n"]
    return "\n".join(out)


def metrics_table() -> str:
    """The metric schema (``benchmark.metrics.METRICS``): each metric's direction and whether runs log its delta."""
    rows = [[f"`{m.name}`", m.display, "higher" if m.higher_is_better else "lower",
             f"`delta/{m.name}`" if m.delta else ""] for m in METRICS.values()]  # fmt: skip
    return _table(["metric", "shown as", "better when", "delta logged on transfer runs"], rows)


BLOCKS = {"groups": groups_table, "strategies": strategies_table, "sources": sources_table, "targets": targets_table,
          "commands": commands_reference, "metrics": metrics_table}  # fmt: skip


def render(text: str) -> str:
    """``text`` with every generated block replaced by what ``conf/`` gives now."""
    return BLOCK.sub(lambda m: m.group(1) + BLOCKS[m.group("name")]() + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.catalog", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--write",
        type=Path,
        nargs="*",
        default=None,
        help="rewrite the generated blocks of these files (none given: every page of docs/ with one)",
    )
    args = parser.parse_args(argv)
    if args.write is None:
        for name, make in BLOCKS.items():
            print(f"<!-- catalog:{name} -->\n{make()}<!-- /catalog -->\n")
        return 0
    for path in args.write or pages():
        text = path.read_text()
        new = render(text)
        if new != text:
            path.write_text(new)
        print(f"{path}: {'updated' if new != text else 'already up to date'}", file=sys.stderr)
    return 0


def pages(docs: Path = CONF_DIR.parent / "docs") -> list[Path]:
    """The pages of ``docs`` (the checkout's, next to ``conf/``) that hold a generated block."""
    return sorted(p for p in docs.rglob("*.md") if BLOCK.search(p.read_text()))


if __name__ == "__main__":
    raise SystemExit(main())
