"""Code provenance of a run: the harness's git commit and the versions of the libraries that compute its numbers.

A reused run may come from other code: the run key names the experiment, not the code that ran it. Every run records
``git_sha`` and ``version/<library>`` tags, and ``provenance_mismatch`` tells the report (and the transfer run's own
``provenance_mismatch`` tag) when the two runs of a pair were computed by different code.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import importlib
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from mlflow.utils import mlflow_tags

LIBRARIES = ("torch", "timm", "pytorch_lightning", "mlflow", "torchmetrics", "numpy", "scipy", "sklearn", "hydra",
             "optuna")  # fmt: skip
"""Libraries whose version is recorded on every run (``version/<name>``), besides ``version/python``: those that
compute its numbers, and those that decide which runs exist (Hydra's composition, Optuna's trial draws) or what a
report concludes from them (SciPy's t and Wilcoxon tests)."""

DISTRIBUTIONS = {"scipy": "scipy", "sklearn": "scikit-learn", "hydra": "hydra-core", "optuna": "optuna"}
"""Libraries read from their installed package's metadata rather than imported (Optuna alone costs a second to
import, and a run that does not tune never imports it); ``absent`` when not installed."""

CODE_ROOT = Path(__file__).resolve().parents[1]
"""The checkout the running harness was imported from (its commit is the code's identity, whatever the cwd)."""


@functools.cache
def versions() -> dict[str, str]:
    """``{"version/python": "3.11.9", "version/torch": "2.5.1", ...}`` of this process (computed once)."""
    out = {"version/python": platform.python_version()}
    for name in LIBRARIES:
        try:
            if name in DISTRIBUTIONS:
                out[f"version/{name}"] = metadata.version(DISTRIBUTIONS[name])
            else:
                out[f"version/{name}"] = str(importlib.import_module(name).__version__)
        except (ImportError, AttributeError, metadata.PackageNotFoundError):
            out[f"version/{name}"] = "absent"
    return out


@functools.cache
def git_sha(root: Path = CODE_ROOT) -> str:
    """The commit of the checkout at ``root`` (default: the harness's own, not the working directory's), 12 hex
    digits; ``-dirty.<8 hex>`` is appended when tracked files differ from it (the digest of ``git diff HEAD``, so two
    different uncommitted states do not look alike). ``unknown`` outside git. Cached: the code a process runs does
    not change while it runs, even when files on disk do."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        diff = subprocess.run(
            ["git", "diff", "HEAD", "--no-ext-diff"], cwd=root, capture_output=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty.{hashlib.sha256(diff).hexdigest()[:8]}" if diff else sha


@functools.cache
def git_commit(root: Path = CODE_ROOT) -> str | None:
    """The full 40-hex commit of the harness's checkout (MLflow's ``mlflow.source.git.commit``), None outside git."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers) and no $USER
        return "unknown"


def context_tags() -> dict[str, str]:
    """MLflow's own context tags, which its fluent ``start_run`` sets and ``MlflowClient.create_run`` does not: the
    UI's "Created by" (``mlflow.user``) and "Source" (``mlflow.source.name``/``type``: the program this process
    runs, ``python -m benchmark.run`` being ``.../benchmark/run.py``) and the commit of the harness's checkout
    (``mlflow.source.git.commit``; ``git_sha`` says whether the tree was dirty)."""
    out = {
        mlflow_tags.MLFLOW_USER: _user(),
        mlflow_tags.MLFLOW_SOURCE_NAME: str(Path(sys.argv[0]).resolve()) if sys.argv and sys.argv[0] else "python",
        mlflow_tags.MLFLOW_SOURCE_TYPE: "LOCAL",
    }
    commit = git_commit()
    if commit:
        out[mlflow_tags.MLFLOW_GIT_COMMIT] = commit
    return out


def tags() -> dict[str, str]:
    """Every provenance tag of a run recorded by this process: ``git_sha`` and ``version/*``."""
    return {"git_sha": git_sha(), **versions()}


PROVENANCE_TAGS = ("git_sha", "version/python", *(f"version/{name}" for name in LIBRARIES))


def provenance_mismatch(transfer_tags: Mapping[str, str], baseline_tags: Mapping[str, str]) -> list[str]:
    """What differs in code between the two runs of a pair, one line each, e.g.
    ``"version/torch: 2.5.1 (transfer) vs 2.4.0 (baseline)"``; empty when both ran the same code.

    Pure function of two runs' tags (``run.data.tags``, or a report row's ``tags.*`` with the prefix stripped).
    A tag recorded on one run only counts as a difference (``unrecorded``); one recorded on neither (runs older than
    these tags) does not, as nothing can be compared.
    """
    out = []
    for key in PROVENANCE_TAGS:
        a, b = _recorded(transfer_tags.get(key)), _recorded(baseline_tags.get(key))
        if a != b:
            out.append(f"{key}: {a or 'unrecorded'} (transfer) vs {b or 'unrecorded'} (baseline)")
    return out


def _recorded(value: object) -> str | None:
    """A tag's value, or None when absent (a report frame holds NaN for a tag a run lacks)."""
    return value if isinstance(value, str) and value else None
