#!/usr/bin/env bash
# Install if needed, lint, then run the test suite on every core (pytest-xdist), keeping what it measured.
#   scripts/test.sh            the default suite (tests marked slow are skipped)
#   scripts/test.sh --all      everything, slow tests included (what CI runs)
#   scripts/test.sh -k sweep   any other arguments go to pytest (-n 0: one process, in order)
# Each run writes test-reports/junit.xml and test-reports/durations.tsv (every test's seconds; TEST_REPORTS moves
# them) and ends with the 20 slowest tests: `python scripts/slowest.py test-reports/durations.tsv` prints them again.
source "$(dirname "$0")/_env.sh"
ruff check benchmark tests scripts
ruff format --check benchmark tests scripts
reports="${TEST_REPORTS:-$ROOT/test-reports}"
mkdir -p "$reports"
marks=(-m "not slow")
if [ "${1:-}" = "--all" ]; then
  shift
  marks=()
fi
# One torch thread per test process (tests/conftest.py sets it too); a job a test starts gets trainer.threads=1.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# loadgroup: a test marked xdist_group shares its worker (and module fixture) with its group; the rest go wherever
# a core is free.
status=0
python -m pytest "${marks[@]}" -n "${TEST_WORKERS:-auto}" --dist loadgroup \
  --junitxml="$reports/junit.xml" --durations-file="$reports/durations.tsv" "$@" || status=$?
if [ -f "$reports/durations.tsv" ]; then python scripts/slowest.py "$reports/durations.tsv" -n 20; fi
exit $status
