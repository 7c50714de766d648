#!/usr/bin/env bash
# README command 1: install what is needed, then run the edged demo on simulated hardware.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/bootstrap.sh"
exec "${EDGED_VENV:-$here/.venv}/bin/edged" demo --state-dir "${EDGED_DEMO_DIR:-$here/demo-state}" "$@"
