"""The documentation's promises hold: "What the tests prove" (docs/development.md) names real tests, the option
tables are what ``conf/`` gives, the README stays short and its links lead somewhere."""

from __future__ import annotations

import ast
import re

from conftest import ROOT

SECTION = "## What the tests prove"
PAGE = ROOT / "docs" / "development.md"


def _section() -> str:
    readme = PAGE.read_text()
    assert SECTION in readme, f"{PAGE} has no {SECTION!r} section"
    body = readme.split(SECTION, 1)[1]
    return re.split(r"\n#{2,3} ", body, maxsplit=1)[0]


def _tests(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_test_the_readme_names_exists():
    refs = re.findall(r"`(tests/test_\w+\.py)::(test_\w+)`", _section())
    assert len(refs) >= 30, f"only {len(refs)} test references in {SECTION!r}"
    missing = [f"{path}::{name}" for path, name in refs if not (ROOT / path).exists() or name not in _tests(path)]
    assert not missing, f"README names tests that do not exist: {missing}"


def test_every_promise_row_names_a_test():
    rows = [line for line in _section().splitlines() if line.startswith("| ") and not line.startswith("| promise")]
    rows = [r for r in rows if not set(r) <= set("|- ")]
    assert rows, "no promise rows"
    bare = [r for r in rows if "::test_" not in r]
    assert not bare, f"promises without a test: {bare}"


def test_option_tables_are_what_conf_gives():
    """The documentation's option tables (sources, targets, strategies with their comparison metadata, config
    groups) are generated from ``conf/``: a new YAML, a changed ``meta`` block or a new header comment must reach them
    (``python -m benchmark.catalog --write``)."""
    from benchmark import catalog

    pages = catalog.pages(ROOT / "docs")
    names = [m.group("name") for p in pages for m in catalog.BLOCK.finditer(p.read_text())]
    assert sorted(names) == sorted(catalog.BLOCKS), f"generated blocks in docs/: {names}"
    stale = [str(p) for p in pages if catalog.render(p.read_text()) != p.read_text()]
    assert not stale, f"option tables are stale in {stale}: run python -m benchmark.catalog --write"


def test_the_readme_is_short_and_its_links_lead_somewhere():
    """At most 250 lines (the docs hold the rest); every docs/ path it names exists."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    named = set(re.findall(r"`(docs/[\w/.-]+\.md)`", text))
    assert len(named) >= 10 and all((ROOT / p).is_file() for p in named), sorted(
        p for p in named if not (ROOT / p).is_file()
    )


def test_a_stale_table_is_caught():
    from benchmark import catalog

    text = (ROOT / "docs" / "reference" / "options.md").read_text()
    stale = text.replace("| `finetune` |", "| `fine_tune` |", 1)
    assert stale != text and catalog.render(stale) != stale
