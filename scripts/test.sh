#!/usr/bin/env bash
# Install if needed, lint, then run the test suite. Arguments go to pytest (e.g. `scripts/test.sh -m slow`).
source "$(dirname "$0")/_env.sh"
ruff check benchmark tests scripts
ruff format --check benchmark tests scripts
python -m pytest "$@"
