#!/usr/bin/env bash
# README command 2: install what is needed, then run lint, type checks and the whole test suite.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EDGED_TEST_EXTRAS=1 bash "$here/scripts/bootstrap.sh"
venv="${EDGED_VENV:-$here/.venv}"
cd "$here"
"$venv/bin/ruff" check .
bash "$here/scripts/typecheck.sh"
exec "$venv/bin/python" -m pytest "$@"
