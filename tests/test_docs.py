"""The documentation site builds with ``mkdocs build --strict``: a page missing from the navigation, a link to a page
or an anchor that does not exist, or an API docstring that no longer resolves fails the suite."""

from __future__ import annotations

import os
import subprocess
import sys

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
