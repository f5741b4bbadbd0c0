"""Where the Hydra configs live: the one fact every reader of ``conf/`` takes from here.

The repository keeps ``conf/`` at its top, where users read and edit it; a wheel ships the same files inside the
package as ``benchmark/conf`` (``setup.py``), because an installed package has no repository around it. So the packaged
folder wins when it exists (a wheel install), else the checkout's (an editable install or ``PYTHONPATH``). Both are
absolute, computed once from this file, so the configs are found from any working directory.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "conf"
CONF_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[1] / "conf"
CONFIG_PATH = str(CONF_DIR)  # for @hydra.main: Hydra takes an absolute config_path as is, not relative to the caller
CONFIG_NAME = "config"
