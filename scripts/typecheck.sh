#!/usr/bin/env bash
# mypy over edged as it installs: drivers/ and simulators/ appear as edged/drivers and
# edged/simulators (a tree of symlinks in a temporary folder), so that no import of
# edged's own modules goes unresolved (ignore_missing_imports is for third parties only).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${EDGED_VENV:-$here/.venv}"
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/edged"
for f in "$here"/edged/*; do ln -s "$f" "$tree/edged/"; done
ln -s "$here/drivers" "$tree/edged/drivers"
ln -s "$here/simulators" "$tree/edged/simulators"
ln -s "$here/benchmarks" "$tree/benchmarks"
cp "$here/pyproject.toml" "$tree/"
cd "$tree"
exec "$venv/bin/mypy" --config-file pyproject.toml --cache-dir "$here/.mypy_cache" "$@"
