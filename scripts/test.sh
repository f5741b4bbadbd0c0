#!/usr/bin/env bash
# Install if needed, lint, then run the test suite.
#   scripts/test.sh            the default suite (about 9-10 minutes on 2 cores; tests marked slow are skipped)
#   scripts/test.sh --all      everything, slow tests included (what CI runs)
#   scripts/test.sh -k sweep   any other arguments go to pytest
source "$(dirname "$0")/_env.sh"
ruff check benchmark tests scripts
ruff format --check benchmark tests scripts
if [ "${1:-}" = "--all" ]; then
  shift
  python -m pytest "$@"
else
  python -m pytest -m "not slow" "$@"
fi
