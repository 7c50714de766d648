#!/usr/bin/env bash
# Prepare a fresh Debian machine (as root) or a developer checkout to run edged:
# the Debian packages the real stacks need and a virtualenv with the Python packages.
# Safe to run any number of times: it installs only what is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${EDGED_VENV:-$here/.venv}"

# pcscd + vpcd: the real PC/SC stack and the virtual reader driver the card simulator
# talks to; mosquitto: the real broker; swig, libpcsclite-dev, gcc, python3-dev: pyscard
# ships as source and builds here as on a Raspberry Pi.
# systemd: only for systemd-analyze, which the tests use to check the unit's hardening.
apt_packages=(pcscd vsmartcard-vpcd mosquitto swig libpcsclite-dev gcc python3-dev python3-venv pkg-config systemd)

# The test suite also renders the printed ledger in headless Chromium and reads the PDF,
# breaks storage on a loop-mounted ext4 image (e2fsprogs, util-linux's losetup and
# findmnt) and cuts the broker's network in a namespace (iproute2's ip and tc).
if [ "${EDGED_TEST_EXTRAS:-0}" = 1 ]; then
    apt_packages+=(chromium fonts-noto-cjk poppler-utils e2fsprogs util-linux iproute2)
    # The Debian package is built (dh-virtualenv) and installed and purged by the tests.
    apt_packages+=(dh-virtualenv debhelper dpkg-dev fakeroot libccid)
    # The central store on PostgreSQL: the tests start their own server (initdb in a
    # temporary directory, as the postgres user the package creates).
    apt_packages+=(postgresql)
    # An independent verifier of the checkpoints and proofs: Go's sumdb/note and
    # sumdb/tlog, built offline in GOPATH mode from Debian's sources.
    apt_packages+=(golang-go golang-golang-x-mod-dev)
    # The demo and the README walk are run with the clock moved years ahead (libfaketime).
    apt_packages+=(faketime)
fi

missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: missing Debian packages: ${missing[*]} (run this as root, or: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian starts services on install; our tests and demo start their own pcscd and
# mosquitto, and only one pcscd can run per machine (its socket path is fixed).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl stop pcscd.socket pcscd.service mosquitto.service >/dev/null 2>&1 || true
fi

python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    echo "bootstrap: creating virtualenv $venv" >&2
    "$python" -m venv "$venv"
fi

# Reinstall only when pyproject.toml changed since the last install.
stamp="$venv/.edged-installed"
want="$(sha256sum "$here/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing edged and its Python packages into $venv" >&2
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install -q -e "$here[test]"
    echo "$want" > "$stamp"
fi
