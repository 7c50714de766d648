"""systemd integration: hardened units, and the notify/watchdog protocol (R8, R10, R12)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from edged.device.config import load_config
from edged.device.daemon import Daemon
from edged.device.keys import init_keys
from tests.conftest import require_pcscd

pytestmark = pytest.mark.system

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "config" / "edged.toml"


@pytest.mark.parametrize("unit", ["edged.service", "edged-collector.service"])
def test_unit_exposure_is_at_most_2(unit):
    """R12: least privilege, measured by systemd-analyze security (offline)."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail(
            "systemd-analyze missing (apt-get install systemd); scripts/bootstrap.sh installs it"
        )
    p = subprocess.run(
        [exe, "security", "--offline=yes", str(ROOT / "systemd" / unit)],
        capture_output=True,
        text=True,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout + p.stderr)
    assert m, p.stdout + p.stderr
    assert float(m.group(1)) <= 2.0, p.stdout


def test_unit_is_notify_with_watchdog():
    """R9, R10: a notify unit with a watchdog, its own user, and both state directories:
    the journal's and, apart from it, the head witness's (the example config's default
    witness_dir), or a restored journal would go unseen on a real device."""
    from edged.device.config import load_config as load

    text = (ROOT / "systemd" / "edged.service").read_text()
    witness = load(EXAMPLE).journal.witness_dir
    assert witness is not None and witness.parent == Path("/var/lib")
    assert f"StateDirectory=edged {witness.name}" in text
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "User=edged",
        "StateDirectory=edged",
        "ConfigurationDirectory=edged",
        "CapabilityBoundingSet=",
        "NoNewPrivileges=yes",
        "DeviceAllow=/dev/gpiochip0 rw",
    ):
        assert line in text, line


def test_unit_lets_the_daemon_open_exactly_the_devices_the_config_names():
    """R1, R3, R12: the example config's server-room keypad is a USB keypad (evdev) and
    its door has an LCD on I2C; the unit closed every device but the GPIO chips, so the
    daemon could not open them and systemd restarted it in a loop. The devices and groups
    the unit allows are derived from the configuration, and are exactly those."""
    from edged.device.config import load_config as load

    cfg = load(EXAMPLE)
    text = (ROOT / "systemd" / "edged.service").read_text()
    assert "DevicePolicy=closed" in text
    allowed = {ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("DeviceAllow=")}
    line = next(ln for ln in text.splitlines() if ln.startswith("SupplementaryGroups="))
    groups = set(line.split("=", 1)[1].split())
    want, want_groups = needed_devices(cfg)
    assert allowed == want, (allowed, want)  # exactly these: nothing more, nothing less
    assert groups == want_groups, (groups, want_groups)


def needed_devices(cfg) -> tuple[set[str], set[str]]:
    """What the unit must let the daemon open for ``cfg`` (DeviceAllow= lines, groups):
    the GPIO chips (Pi 4: gpiochip0, Pi 5: gpiochip4), input events for a USB keypad
    (read only), the I2C bus of an LCD. Before: the keypad, then the LCD, were blocked
    by the unit although the example configuration names them."""
    allow = {"/dev/gpiochip0 rw", "/dev/gpiochip4 rw"}
    groups = {"gpio"}
    if any(k.backend == "evdev" for k in cfg.keypads.values()):
        allow.add("char-input r")
        groups.add("input")
    if any(d.backend == "hd44780" for d in cfg.displays.values()):
        allow.add("char-i2c rw")
        groups.add("i2c")
    return allow, groups


def test_daemon_sends_ready_status_and_watchdog(tmp_path, monkeypatch):
    """R10: READY once started, WATCHDOG pings from the main loop, STOPPING at the end."""
    require_pcscd()
    sock_path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # ping every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    cfg = load_config(EXAMPLE, state_dir=tmp_path / "state")
    init_keys(cfg.state_dir)
    d = Daemon(cfg, simulate=True, control_socket=False)
    t = threading.Thread(target=lambda: d.run(install_signals=False), daemon=True)
    t.start()
    got: list[str] = []
    try:
        while not any(m.startswith("WATCHDOG=1") for m in got):
            got.append(srv.recv(4096).decode())
        assert got[0].startswith("READY=1\nSTATUS=0 inside, journal head")
    finally:
        d.request_stop()
        t.join(30)
    while "STOPPING=1" not in got:
        got.append(srv.recv(4096).decode())
    srv.close()


def test_metrics_on_loopback_only(tmp_path):
    """Optional metrics: Prometheus text on loopback; other addresses are refused by config."""
    import urllib.request

    from edged.simulators.mosquitto import free_port

    from edged.errors import ConfigError

    require_pcscd()
    port = free_port()
    cfg_path = tmp_path / "edged.toml"
    cfg_path.write_text(EXAMPLE.read_text() + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    cfg = load_config(cfg_path, state_dir=tmp_path / "state")
    init_keys(cfg.state_dir)
    d = Daemon(cfg, simulate=True, control_socket=False)
    t = threading.Thread(target=lambda: d.run(install_signals=False), daemon=True)
    t.start()
    try:
        for _ in range(300):
            if d.running.wait(0.1) or d.stopped.is_set():
                break
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        text = body.decode()
        assert 'edged_occupancy{area="handling"} 0' in text
        assert 'edged_door_unlocked{door="main"} 0' in text and "edged_journal_head_seq" in text
        assert "edged_journal_ok 1" in text
    finally:
        d.request_stop()
        t.join(30)
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text() + '\n[metrics]\nlisten = "0.0.0.0:9108"\n')
    with pytest.raises(ConfigError, match="not a loopback"):
        load_config(bad)


def test_metrics_show_a_journal_that_cannot_record():
    """R10: a storage fault shows in the metrics too (scraped without the journal)."""
    from edged.device.metrics import render

    text = render({"journal": {"ok": False, "error": "disk I/O error", "fault": {"unrecorded": 3}}})
    assert "edged_journal_ok 0" in text and "edged_journal_unrecorded 3" in text
    assert "edged_journal_head_seq 0" in text
