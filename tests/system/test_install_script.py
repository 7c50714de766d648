"""docs/install.md's developer route as a script (scripts/install-device.sh), run as
written, as root, in a private mount namespace whose /etc, /opt, /var/lib and /usr/local
are overlays: the script makes the real user, directories, configuration and unit with
the real paths while the host stays untouched. Then the service is started as systemd
would start it (its unit's ExecStart, as its User, with NOTIFY_SOCKET), as far as a
machine without systemd as PID 1 allows, and it opens its readers through pcscd as the
service user and records a card (R22, R23 wiring apart)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import textwrap
import time

import pytest
from edged.simulators.pcscd import PcscdHarness, reader_ports
from edged.simulators.vcard import VirtualCard

from tests.conftest import EDGED, require_pcscd
from tests.helpers.build import tree_copy
from tests.helpers.rigconfig import READERS, this_machine

pytestmark = pytest.mark.system

OVERLAID = ("/etc", "/opt", "/var/lib", "/usr/local")
EXPIRED_CARD = bytes.fromhex("0123456789ABCDEF")  # Former Staff Ito in acl-example.toml


def _unit_field(unit: str, key: str) -> str:
    return next(ln.split("=", 1)[1] for ln in unit.splitlines() if ln.startswith(key + "="))


@pytest.fixture
def namespace(tmp_path):
    if shutil.which("unshare") is None:
        pytest.fail("util-linux's unshare is missing: run scripts/bootstrap.sh as root")
    if os.geteuid() != 0:
        pytest.fail("the install script test runs as root (CI does)")
    layers = tmp_path / "layers"
    mounts = []
    for d in OVERLAID:
        name = d.strip("/").replace("/", "-")
        for sub in ("upper", "work"):
            (layers / name / sub).mkdir(parents=True)
        mounts.append(
            f"mount -t overlay overlay -o lowerdir={d},upperdir={layers / name / 'upper'},"
            f"workdir={layers / name / 'work'} {d}"
        )
    src = tree_copy(tmp_path / "src")
    return tmp_path, layers, "\n".join(mounts), src


def test_the_install_steps_run_as_written_and_the_service_starts(namespace):
    """R22 (what runs is what was installed), R12 (least privilege: keys 0600, state
    0700, the service user runs the door)."""
    tmp, layers, mounts, src = namespace
    require_pcscd()
    # An abstract socket, as systemd's can be: the service user reaches it without a
    # path through this test's private temporary directory.
    notify = f"@edged-install-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + notify[1:])
    script = textwrap.dedent(
        f"""\
        set -euo pipefail
        {mounts}
        cp -a {src} /opt/edged                   # docs: git clone … /opt/edged
        cd /opt/edged && bash scripts/install-device.sh
        stat -c '%a %U %n' /var/lib/edged /var/lib/edged-witness /etc/edged \\
            /etc/edged/edged.toml /var/lib/edged/device_ed25519.key
        id edged
        install -m 0640 -o root -g edged {tmp}/site.toml /etc/edged/edged.toml  # sudoedit
        runuser -u edged -- edged config check /etc/edged/edged.toml
        edged acl example --out /opt/edged/acl-today.toml   # its dates moved to today
        runuser -u edged -- edged acl import - --config /etc/edged/edged.toml \\
            < /opt/edged/acl-today.toml           # docs/install.md step 4, as written
        bash scripts/install-device.sh > /dev/null   # again: keeps config and keys
        cat /etc/systemd/system/edged.service > {tmp}/unit
        exec_start=$(sed -n 's/^ExecStart=//p' /etc/systemd/system/edged.service)
        user=$(sed -n 's/^User=//p' /etc/systemd/system/edged.service)
        echo "starting as $user: $exec_start"
        export NOTIFY_SOCKET={notify}
        # As systemd does it: the service's own process, as its user and groups (setpriv
        # execs; runuser would stay in between and kill the daemon mid-shutdown).
        exec setpriv --reuid="$user" --regid="$user" --init-groups -- $exec_start
        """
    )
    (tmp / "install.sh").write_text(script)
    # The installer's edit, for this machine: the installed example, readers and pins set.
    (tmp / "site.toml").write_text(this_machine((src / "config" / "edged.toml").read_text()))
    pcscd = PcscdHarness(tmp / "pcscd", reader_ports(READERS))
    pcscd.start()
    out = tmp / "out.log"
    with open(out, "w") as log:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "bash", str(tmp / "install.sh")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # Installing takes minutes on a cold pip cache; READY=1 is what systemd awaits.
        sock.settimeout(1)
        got, end = b"", time.monotonic() + 600
        while b"READY=1" not in got:
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail("no READY=1:\n" + out.read_text()[-4000:])
            try:
                got = sock.recv(4096)
            except TimeoutError:
                continue
        text = out.read_text()
        modes = {ln.split()[2]: ln.split()[:2] for ln in text.splitlines() if ln[:1].isdigit()}
        assert modes["/var/lib/edged"] == ["700", "edged"], text
        assert modes["/var/lib/edged-witness"] == ["700", "edged"], text
        assert modes["/etc/edged"] == ["750", "root"], text
        assert modes["/etc/edged/edged.toml"] == ["640", "root"], text
        assert modes["/var/lib/edged/device_ed25519.key"] == ["600", "edged"], text
        assert "groups=" in text and all(g in text for g in ("gpio", "i2c", "input")), text
        unit = (tmp / "unit").read_text()
        assert _unit_field(unit, "ExecStart").startswith("/opt/edged/.venv/bin/edged run ")
        assert _unit_field(unit, "User") == "edged"
        # No test tools on the door: the venv has no pytest, the install is not editable.
        site = next((layers / "opt" / "upper" / "edged" / ".venv" / "lib").glob("python3*"))
        pkgs = {p.name.split("-")[0].lower() for p in (site / "site-packages").iterdir()}
        assert "edged" in pkgs and "pytest" not in pkgs and "hypothesis" not in pkgs, pkgs
        assert not any(p.endswith(".pth") and "edged" in p for p in pkgs), pkgs

        # The service user's daemon reads a card through pcscd and records the denial.
        card = VirtualCard(EXPIRED_CARD, port=pcscd.port("entry"))
        card.insert()
        journal = layers / "var-lib" / "upper" / "edged" / "journal.db"
        end = time.monotonic() + 30
        kinds: list[tuple[str, str]] = []
        while time.monotonic() < end:
            with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
                kinds = [
                    (r[0], r[1] or "")
                    for r in db.execute(
                        "SELECT type, json_extract(body, '$.reason') FROM records ORDER BY seq"
                    )
                ]
            if ("door.denied", "expired") in kinds:
                break
            time.sleep(0.2)
        card.remove()
        assert kinds[0] == ("daemon.started", ""), kinds
        assert ("door.denied", "expired") in kinds, (kinds, out.read_text()[-3000:])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        pcscd.stop()
        sock.close()
    # SIGTERM, as systemd stops it: the daemon stops cleanly and its journal, written by
    # the service user, verifies.
    assert proc.returncode == 0, out.read_text()[-3000:]
    assert '"daemon_stopped"' in out.read_text(), out.read_text()[-3000:]
    v = subprocess.run([EDGED, "verify", "--db", str(journal)], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("OK"), v.stdout + v.stderr
