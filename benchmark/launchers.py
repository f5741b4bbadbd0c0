"""Which Hydra launchers run a sweep's jobs on the machine that launches them: the one fact the GPU check and the
store check share (``benchmark.devices``, ``benchmark.tracking``)."""

from __future__ import annotations

LOCAL_LAUNCHERS = (
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",  # submitit's local executor
)
"""Launchers whose jobs run on the machine that launches them (Slurm's and Ray's run elsewhere)."""


def runs_here(launcher: str | None) -> bool:
    """Whether the jobs of the launcher ``_target_`` run on this machine (None: Hydra's basic launcher)."""
    return launcher is None or launcher in LOCAL_LAUNCHERS
