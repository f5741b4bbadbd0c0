#!/usr/bin/env bash
# Quickstart: install if needed, run the quickstart sweep (sim-to-real and unrelated sources, fine-tune and
# linear probe, 5 labels/class and all labels, 5 seeds; two jobs at once), print the verdict table and how to browse it.
# Extra arguments go to Hydra, e.g. `scripts/quickstart.sh hydra.launcher.n_jobs=4` on a machine with more cores.
source "$(dirname "$0")/_env.sh"
start=$(date +%s)
python -m benchmark.run -m experiment=quickstart "$@"
echo "quickstart finished in $(( $(date +%s) - start )) s"
echo
python -m benchmark.ui --experiment quickstart --print-only
