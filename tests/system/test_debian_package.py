"""The install artifact: a Debian package with its own virtualenv under /opt, the unit,
the service user and its state directories, the polkit rule and the NFC blacklist; no
test tools, no broker, no virtual reader. Built, installed and purged here (R22: an
upgrade is installing a newer package)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.build import run, tree_copy

pytestmark = [pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    if shutil.which("dpkg-buildpackage") is None or shutil.which("dh_virtualenv") is None:
        pytest.fail("dpkg-dev and dh-virtualenv are missing: run scripts/bootstrap.sh as root")
    src = tmp_path_factory.mktemp("deb") / "edged"
    tree_copy(src)
    run("dpkg-buildpackage", "-us", "-uc", "-b", cwd=src, timeout=900)
    [pkg] = src.parent.glob("edged_*.deb")
    return pkg


def test_the_package_holds_the_install_and_nothing_of_the_tests(deb):
    names = run("dpkg-deb", "-c", deb).stdout
    files = {line.split()[-1].lstrip(".") for line in names.splitlines()}
    for want in (
        "/lib/systemd/system/edged.service",
        "/etc/polkit-1/rules.d/50-edged-pcscd.rules",
        "/etc/modprobe.d/blacklist-edged-nfc.conf",
        "/opt/venvs/edged/bin/edged",
        "/opt/venvs/edged/lib/python3.11/site-packages/edged/core/machine.py",
        "/usr/share/doc/edged/examples/edged.toml",
    ):
        assert want in files, want
    site = "/opt/venvs/edged/lib/python3.11/site-packages/"
    tops = {f[len(site) :].split("/")[0] for f in files if f.startswith(site)}
    assert not {"pytest", "hypothesis", "ruff", "mypy", "jsonschema"} & tops, tops
    assert {"smartcard", "gpiozero", "paho", "cryptography"} <= tops, tops
    depends = run("dpkg-deb", "-f", deb, "Depends").stdout
    assert "pcscd" in depends and "mosquitto" not in depends and "vpcd" not in depends


def test_install_then_purge(deb):
    """Installs with its dependencies, makes the user and its directories and groups, runs
    as that user with GPIO, I2C and input devices reachable; purging removes the program,
    the config and every secret (signing keys, card secret) but keeps the journal and what
    verifies it (records are kept for the set period: R9, R20, R25)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    existed = Path("/var/lib/edged").exists()
    run("apt-get", "install", "-y", "-qq", f"{deb}", env=env, timeout=600)
    try:
        assert run("getent", "passwd", "edged").stdout.split(":")[5] == "/var/lib/edged"
        for d in ("/var/lib/edged", "/var/lib/edged-witness"):
            st = os.stat(d)
            assert oct(st.st_mode & 0o777) == "0o700" and st.st_uid != 0, d
        unit = Path("/lib/systemd/system/edged.service").read_text()
        assert "ExecStart=/opt/venvs/edged/bin/edged run" in unit
        # GPIO and the LCD on a Pi: the groups the unit names exist and hold the user, and
        # the venv sees the system's site packages (Raspberry Pi OS's python3-lgpio).
        assert {"gpio", "i2c", "input"} <= set(run("id", "-nG", "edged").stdout.split())
        cfg = Path("/opt/venvs/edged/pyvenv.cfg").read_text()
        assert "include-system-site-packages = true" in cfg, cfg
        paths = run("/opt/venvs/edged/bin/python", "-c", "import sys; print(sys.path)").stdout
        assert "/usr/lib/python3/dist-packages" in paths, paths
        out = run(
            "runuser",
            "-u",
            "edged",
            "--",
            "/usr/bin/edged",
            "keys",
            "init",
            "--state-dir",
            "/var/lib/edged/t",
        )
        assert "key id" in out.stdout
        run("/usr/bin/edged", "config", "check", "/etc/edged/edged.toml")
        # What a door holds that purging must not leave behind (the test's state dir is
        # the package's own, as a real door's would be).
        run("runuser", "-u", "edged", "--", "/usr/bin/edged", "keys", "init", "--force",
            "--state-dir", "/var/lib/edged")  # fmt: skip
    finally:
        run("dpkg", "--purge", "edged", env=env, timeout=300)
    for secret in ("device_ed25519.key", "card_fingerprint.key"):
        assert not Path("/var/lib/edged", secret).exists(), secret
    assert Path("/var/lib/edged/device_ed25519.pub").exists()  # verifies the kept journal
    assert not Path("/opt/venvs/edged").exists() and not Path("/usr/bin/edged").exists()
    assert not Path("/etc/edged/edged.toml").exists()
    assert Path("/var/lib/edged").exists()  # the records stay
    if not existed:  # leave this machine as it was
        shutil.rmtree("/var/lib/edged", ignore_errors=True)
        shutil.rmtree("/var/lib/edged-witness", ignore_errors=True)
        subprocess.run(["deluser", "--system", "edged"], capture_output=True)
