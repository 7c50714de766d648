#!/usr/bin/env bash
# docs/install.md, route 1b (from a clone) and step 2, as one script: run it as root from
# the checkout that is to be installed (for example /opt/edged). It installs what the door
# needs and nothing of the tests, makes the service user and its directories, installs the
# configuration, the polkit rule, the NFC blacklist and the unit, and creates the device's
# keys. It does not enable the unit: the site's configuration and access list come first.
# Safe to run again: it keeps an existing configuration and existing keys.
# tests/test_install_script.py runs it as written (in a private mount namespace).
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
user=edged
state=/var/lib/edged
witness=/var/lib/edged-witness
etc=/etc/edged
venv="$src/.venv"

if [ "$(id -u)" -ne 0 ]; then
    echo "install-device: run this as root (sudo bash scripts/install-device.sh)" >&2
    exit 1
fi

# Debian's own Python, not a developer's pyenv or conda: the service user must be able to
# execute the interpreter the virtualenv points at.
python=/usr/bin/python3
packages=(pcscd libccid swig libpcsclite-dev gcc python3-dev python3-venv)
# gpiozero's pin library on a Pi (Raspberry Pi OS has it; plain Debian for PCs does not).
if apt-cache show python3-lgpio >/dev/null 2>&1; then packages+=(python3-lgpio); fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-device: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# A device never runs the virtual reader of the tests: it listens on the network.
if dpkg-query -W -f='${Status}' vsmartcard-vpcd 2>/dev/null | grep -q "install ok installed"; then
    echo "install-device: warning: vsmartcard-vpcd is installed; on a door: apt-get purge vsmartcard-vpcd" >&2
fi

# The program: a plain (not editable) install of this checkout with the device drivers
# (pyscard, gpiozero, evdev) and without the test tools.
# --system-site-packages lets the venv see Debian's python3-lgpio.
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv --system-site-packages "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "$src[device]"
chmod -R go+rX "$src"

# The service user: no login, its home is the state directory (created 0700).
if ! id "$user" >/dev/null 2>&1; then
    useradd --system --home-dir "$state" --create-home --shell /usr/sbin/nologin "$user"
fi
install -d -m 0700 -o "$user" -g "$user" "$state" "$witness"
for g in gpio i2c input; do
    getent group "$g" >/dev/null || groupadd --system "$g"
done
usermod -aG gpio,i2c,input "$user"

install -D -m 0644 "$src/config/blacklist-edged-nfc.conf" /etc/modprobe.d/edged-nfc.conf
install -D -m 0644 "$src/systemd/50-edged-pcscd.rules" /etc/polkit-1/rules.d/50-edged-pcscd.rules
install -d -m 0750 -o root -g "$user" "$etc"
if [ ! -e "$etc/edged.toml" ]; then
    install -m 0640 -o root -g "$user" "$src/config/edged.toml" "$etc/edged.toml"
fi
sed "s#^ExecStart=.*#ExecStart=$venv/bin/edged run --config $etc/edged.toml#" \
    "$src/systemd/edged.service" > /etc/systemd/system/edged.service
chmod 0644 /etc/systemd/system/edged.service
ln -sf "$venv/bin/edged" /usr/local/bin/edged

if [ ! -e "$state/device_ed25519.key" ] && [ ! -e "$state/device_ed25519.pub" ]; then  # the private half is erased at the first epoch change
    runuser -u "$user" -- "$venv/bin/edged" keys init --state-dir "$state"
fi

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
cat <<EOF
install-device: installed. Next (docs/install.md):
  edit $etc/edged.toml                     site, device, pins, readers, areas
  runuser -u $user -- edged config check $etc/edged.toml
  runuser -u $user -- edged acl import - --config $etc/edged.toml < staff.toml
  systemctl enable --now edged
  runuser -u $user -- edged doctor --config $etc/edged.toml
EOF
