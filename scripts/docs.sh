#!/usr/bin/env bash
# The documentation site from docs/ (scripts/mkdocs.yml): `scripts/docs.sh serve` (http://127.0.0.1:8000, reloads on
# edits) or `scripts/docs.sh build [-d DIR]` (strict: a broken link or a page missing from the navigation fails).
source "$(dirname "$0")/_env.sh"
command="${1:-serve}"
shift || true
export NO_MKDOCS_2_WARNING=1
if [ "$command" = "build" ]; then
  exec python -m mkdocs build --strict -f "$ROOT/scripts/mkdocs.yml" "$@"
fi
exec python -m mkdocs "$command" -f "$ROOT/scripts/mkdocs.yml" "$@"
