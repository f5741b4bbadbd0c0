# Sourced by the scripts: make sure .venv exists and holds this checkout's package with its dev extras.
# Re-installs only when pyproject.toml or setup.py changed (a stamp file records their hash), or the install is broken.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON_BIN:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV" >&2
  "$PYTHON_BIN" -m venv "$VENV"
fi
install_stamp() { { cat pyproject.toml; [ ! -f setup.py ] || cat setup.py; } | sha256sum | cut -c1-16; }
STAMP="$VENV/.transfer-bench-$(install_stamp)"
# find_spec, not import: importing torch, timm and MLflow costs 12-15 s of CPU on 2 cores, on every run
if [ ! -f "$STAMP" ] || ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ('benchmark', 'timm', 'mlflow', 'pytorch_lightning', 'torch')))" 2>/dev/null; then
  echo "installing transfer-bench into $VENV (first time: a few minutes)" >&2
  log="$(mktemp)"
  # A newer pip is nice to have, not needed: its failure is reported and the install goes on.
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >"$log" 2>&1 || { cat "$log" >&2; echo "warning: could not upgrade pip" >&2; }
  if ! "$VENV/bin/python" -m pip install --quiet -e '.[dev]' >"$log" 2>&1; then
    cat "$log" >&2
    echo "install failed: '$VENV/bin/python -m pip install -e .[dev]' exited non-zero (its output is above)" >&2
    exit 1
  fi
  grep -v "^WARNING: Location" "$log" >&2 || true  # pip's own warnings, shown; grep exits 1 when there are none
  rm -f "$log"
  "$VENV/bin/python" -c "import benchmark, timm, mlflow, pytorch_lightning, pytest, xdist, playwright" &&
    "$VENV/bin/ruff" --version >/dev/null || { echo "install failed: the packages above do not import" >&2; exit 1; }
  rm -f "$VENV"/.transfer-bench-*
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"  # nothing downloads unless the user asks for it
