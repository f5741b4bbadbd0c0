"""Where the Hydra configs live: the one fact every reader of ``conf/`` takes from here."""

from __future__ import annotations

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
