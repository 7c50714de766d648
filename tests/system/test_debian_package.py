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
    """Installs with its dependencies, makes the user and its directories, runs as that
    user; purging removes the program and the config but keeps the journal's directory
    (records are kept for the set period: R9, R20)."""
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
    finally:
        run("dpkg", "--purge", "edged", env=env, timeout=300)
    assert not Path("/opt/venvs/edged").exists() and not Path("/usr/bin/edged").exists()
    assert not Path("/etc/edged/edged.toml").exists()
    assert Path("/var/lib/edged").exists()  # the records stay
    if not existed:  # leave this machine as it was
        shutil.rmtree("/var/lib/edged", ignore_errors=True)
        shutil.rmtree("/var/lib/edged-witness", ignore_errors=True)
        subprocess.run(["deluser", "--system", "edged"], capture_output=True)
