"""The documentation site builds with ``mkdocs build --strict``: a page missing from the navigation, a link to a page
or an anchor that does not exist, or an API docstring that no longer resolves fails the suite."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT


def test_the_docs_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "scripts" / "mkdocs.yml"),
           "-d", str(tmp_path / "site")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    built = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    assert {"index.html", "concepts/verdicts/index.html", "reference/options/index.html",
            "reference/api/index.html", "development/index.html"} <= built  # fmt: skip
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "paired_summary" in api and "SequentialDesign" in api  # mkdocstrings rendered the docstrings


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """The check above can fail: the same site with one link to a page that does not exist does not build."""
    import shutil

    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "mkdocs.yml", tmp_path / "scripts")
    (tmp_path / "benchmark").symlink_to(ROOT / "benchmark")  # mkdocstrings reads the package beside docs/
    page = tmp_path / "docs" / "concepts" / "budgets.md"
    page.write_text(page.read_text() + "\nSee [nowhere](../nowhere.md).\n")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "scripts" / "mkdocs.yml"),
           "-d", str(tmp_path / "s")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0 and "nowhere.md" in done.stdout + done.stderr


RUN = ("python -m benchmark.run", "transfer-bench", "scripts/quickstart.sh")
"""Commands that run the harness: their overrides are composed. ``scripts/quickstart.sh`` adds experiment=quickstart."""


def documented_commands() -> list[tuple[str, str]]:
    """``(page, command)`` for every command of the README and the docs that starts with ``python -m benchmark.``,
    ``transfer-bench`` or ``scripts/quickstart.sh``: the lines of their shell blocks (continuations joined, comments
    dropped) and their inline code. The results pages are records of commands that ran, not instructions: left out."""
    import re

    pages = [ROOT / "README.md", *(p for p in (ROOT / "docs").rglob("*.md") if "results" not in p.parts)]
    found = []
    for page in pages:
        text = page.read_text()
        lines = []
        for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S):
            lines += re.sub(r"\\\n\s*", " ", block).splitlines()
        lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for line in lines:
            line = re.sub(r"(^|\s+)#\s.*$", "", line.strip())
            if line.startswith(("python -m benchmark.", *RUN[1:])):
                found.append((str(page.relative_to(ROOT)), line))
    return found


def overrides_of(command: str) -> list[str]:
    """The Hydra overrides of a documented run command: its arguments without flags and placeholders (``<p>``,
    ``...``, shell variables stay as text, which composes)."""
    import shlex

    words = shlex.split(command)
    start = 3 if words[0] == "python" else 1
    args = [w for w in words[start:] if not w.startswith("-") and w != "..." and "<" not in w]
    return (["experiment=quickstart"] if words[0] == "scripts/quickstart.sh" else []) + args


@pytest.mark.slow  # ~40 s: about a hundred compositions; CI runs it
def test_every_documented_run_command_composes():
    """Each run command of the docs is composed by Hydra with each value of each swept override (the other swept
    overrides at their first value): a renamed option, group or value in a command fails here."""
    from hydra import initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    from benchmark.compose import config
    from benchmark.config_path import CONF_DIR

    ENUMERABLE = (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP, ValueType.RANGE_SWEEP)  # an interval is
    # a tuning sweeper's search space, not a job's value: left to the sweeper

    runs = [(page, c) for page, c in documented_commands() if c.startswith(RUN) and not c.startswith(
        ("python -m benchmark.run --", "transfer-bench-"))]  # fmt: skip
    assert len(runs) >= 15, runs
    parser = OverridesParser.create()
    failures, composed = [], set()
    for page, command in runs:
        overrides = overrides_of(command)
        parsed = parser.parse_overrides(overrides)
        values = [[o.input_line] if not o.is_sweep_override() else
                  [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in parsed
                  if not o.is_sweep_override() or o.value_type in ENUMERABLE]  # fmt: skip
        firsts = [v[0] for v in values]
        variants = [firsts] + [[*firsts[:i], v, *firsts[i + 1 :]] for i, vs in enumerate(values) for v in vs[1:]]
        for overrides in variants:
            if tuple(overrides) in composed:
                continue
            composed.add(tuple(overrides))
            try:
                with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                    config(overrides)
            except Exception as e:  # every failure is collected and shown
                failures.append(f"{page}: `{command}` with {overrides}: {type(e).__name__}: {str(e)[:300]}")
    assert not failures, "\n".join(failures)


@pytest.mark.slow  # imports every command (rank: torch and timm) and starts two for their --help; CI runs it
def test_every_option_of_a_documented_command_is_in_its_help():
    """The other commands (report, rank, ui, catalog...): every ``--option`` a page uses is one their ``--help``
    lists, so a renamed option fails here."""
    import importlib
    import re
    import subprocess

    used: dict[str, set[str]] = {}
    for _, command in documented_commands():
        module = re.match(r"python -m (benchmark\.[\w.]+)", command)
        if module and module.group(1) != "benchmark.run":
            used.setdefault(module.group(1), set()).update(re.findall(r"(?<!\S)(--[a-z][\w-]*)", command))
    assert {"benchmark.report", "benchmark.ui", "benchmark.rank"} <= set(used), used
    missing = []
    for module, options in used.items():
        main = module.removesuffix(".cli")
        command = importlib.import_module(f"{main}.cli" if main == "benchmark.report" else main)
        if hasattr(command, "parser"):  # the commands of docs/reference/commands.md
            text = command.parser().format_help()
        else:
            done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT,
                                  timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
            assert done.returncode == 0, (module, done.stderr[-2000:])
            text = done.stdout
        missing += [f"{module} {o}" for o in sorted(options) if o not in text]
    assert not missing, missing
