#!/usr/bin/env bash
# Quickstart: install if needed, run the quickstart sweep (sim-to-real and unrelated sources, fine-tune and
# linear probe, 10 labels/class and all labels, 3 seeds), print the verdict table and how to browse it.
# Extra arguments go to Hydra, e.g. `scripts/quickstart.sh trainer.threads=2`.
source "$(dirname "$0")/_env.sh"
start=$(date +%s)
python -m benchmark.run -m experiment=quickstart "$@"
echo "quickstart finished in $(( $(date +%s) - start )) s"
python - <<'PY'
from pathlib import Path

from mlflow.tracking import MlflowClient

from benchmark.tracking import resolve_uri

uri = resolve_uri(None, Path.cwd())
exp = MlflowClient(uri).get_experiment_by_name("quickstart")
print("\nBrowse the runs (parent run = the sweep, with the verdict table; child runs carry delta/test/acc and verdict):")
print(f"  .venv/bin/mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")
if exp is not None:
    print(f"  then open http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs")
PY
