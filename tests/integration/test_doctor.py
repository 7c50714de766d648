"""`edged doctor`: every check, and a fix for each failure (R10, R12)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
from edged.simulators.pcscd import PcscdHarness, reader_ports

from tests.conftest import EDGED, enrol, import_acl, require_pcscd
from tests.helpers.examples import example_acl_text, site_today
from tests.helpers.rigconfig import this_machine

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


def doctor(config: Path, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EDGED, "doctor", "--config", str(config), "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def mock_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "edged.toml"
    cfg.write_text(this_machine())
    return cfg


def test_healthy_installation_passes(tmp_path):
    require_pcscd()
    state = tmp_path / "state"
    cfg = mock_config(tmp_path)
    enrol(state, cfg)
    ports = reader_ports(["entry", "exit", "rack", "server-entry", "server-exit"])
    with PcscdHarness(tmp_path / "pcscd", ports):
        p = doctor(cfg, state)
    assert p.returncode == 0, p.stdout
    lines = {
        ln.split(":")[0].split(maxsplit=1)[1]: ln.split()[0]
        for ln in p.stdout.splitlines()
        if not ln.startswith(" ")
    }
    for name in ("config", "keys", "card readers", "gpio", "disk"):
        assert lines[name] == "OK", p.stdout
    assert lines["broker"] == "WARN"  # no [sync]: said, with the fix
    assert "journal" in lines
    # The example's visitor's right ends within the warning period on any day (R5)...
    assert lines["access list"] == "WARN", p.stdout
    assert "rights of V0042 end within 30 days" in p.stdout and "renew them" in p.stdout
    # ...and a list whose rights all hold beyond it is OK: the example as of 40 days ago,
    # when V0042's right has ended since and the rest run on.
    older = tmp_path / "acl-older.toml"
    older.write_text(example_acl_text(today=site_today() - dt.timedelta(days=40)))
    assert import_acl(state, older, cfg).returncode == 0
    with PcscdHarness(tmp_path / "pcscd", ports):
        p = doctor(cfg, state)
    assert p.returncode == 0 and "OK   access list: version 2" in p.stdout, p.stdout


def test_problems_are_named_with_their_fix(tmp_path):
    require_pcscd()
    state = tmp_path / "state"
    cfg = mock_config(tmp_path)
    p = doctor(cfg, state)
    assert p.returncode == 1
    assert "FAIL keys" in p.stdout and f"edged keys init --state-dir {state}" in p.stdout
    assert "FAIL card readers: pcscd does not answer" in p.stdout
    assert "FAIL access list" in p.stdout
    subprocess.run(
        [EDGED, "keys", "init", "--state-dir", str(state)], check=True, capture_output=True
    )
    os.chmod(state / "device_ed25519.key", 0o640)
    p = doctor(cfg, state)
    assert "chmod 600" in p.stdout and "Traceback" not in p.stdout + p.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("site = 1\n")
    p = doctor(bad, state)
    assert p.returncode == 1 and "FAIL config" in p.stdout and "site" in p.stdout


def test_broker_check_connects_for_real(tmp_path, mosquitto):
    from edged.protocol.keys import init_role_key

    state = tmp_path / "state"
    init_role_key(tmp_path / "central", "collector")
    cfg = mock_config(tmp_path)
    cfg.write_text(
        cfg.read_text() + f'\n[sync]\nbroker = "127.0.0.1:{mosquitto.port}"\n'
        f'collector_pubkey = "{tmp_path}/central/collector_ed25519.pub"\n'
    )
    p = doctor(cfg, state)
    # R12: reached, but in plaintext: a warning that says how to fix it.
    assert f"WARN broker: 127.0.0.1:{mosquitto.port} reached in plaintext" in p.stdout, p.stdout
    assert "tls = true" in p.stdout
    mosquitto.stop()
    p = doctor(cfg, state)
    assert "FAIL broker" in p.stdout and "fix:" in p.stdout


def test_doctor_names_kernel_nfc_drivers_that_hide_readers(tmp_path):
    """R1: port100/pn533 claim a contactless reader before pcscd, which then never sees
    it; doctor says which driver is loaded and how to blacklist it (the file ships in
    config/ and in the wheel)."""
    from edged.device.doctor import nfc_kernel_drivers

    sysmod = tmp_path / "module"
    sysmod.mkdir()
    assert nfc_kernel_drivers(sysmod).status == "OK"
    (sysmod / "port100").mkdir()
    c = nfc_kernel_drivers(sysmod)
    assert c.status == "WARN" and "port100" in c.detail and "modprobe -r port100" in c.fix
    conf = (Path(__file__).parents[2] / "config" / "blacklist-edged-nfc.conf").read_text()
    assert all(f"blacklist {m}" in conf for m in ("port100", "pn533", "pn533_usb"))


def test_doctor_checks_a_simulated_rig(tmp_path):
    """R10: on a developer's machine the example config has no GPIO chips and no reader:
    `doctor --simulate` checks the simulated rig instead (it used to fail with "Unable to
    load any default pin factory") and passes once the state directory is enrolled."""
    require_pcscd()
    state = tmp_path / "state"
    enrol(state)
    p = subprocess.run(
        [
            EDGED,
            "doctor",
            "--config",
            str(ROOT / "config" / "edged.toml"),
            "--state-dir",
            str(state),
            "--simulate",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "OK   gpio: simulated" in p.stdout, p.stdout
    assert "OK   card readers: simulated: 5 virtual readers" in p.stdout, p.stdout
    assert "pin factory" not in p.stdout and "nfc drivers" not in p.stdout
    assert "FAIL" not in p.stdout and p.returncode == 0, p.stdout


def test_doctor_names_a_missing_or_open_card_master_key(tmp_path):
    """R12 (issue 18): with DESFire proofs configured, the site master key must be there
    and private: missing, then readable by others, each a FAIL with its fix; then OK."""
    from edged.device.keys import init_card_master

    state = tmp_path / "state"
    enrol(state)
    cfg = tmp_path / "edged.toml"
    cfg.write_text((ROOT / "config" / "edged.toml").read_text()
                   + '\n[cards.desfire]\naid = "E1D6E0"\n')  # fmt: skip

    def cards_line() -> str:
        p = subprocess.run([EDGED, "doctor", "--config", str(cfg), "--state-dir", str(state),
                            "--simulate"], capture_output=True, text=True, timeout=60)  # fmt: skip
        [line] = [ln for ln in p.stdout.splitlines() if "cards:" in ln]
        i = p.stdout.index(line)
        return p.stdout[i : i + 400]

    out = cards_line()
    assert out.startswith("FAIL cards:") and "edged keys init --card-master" in out, out
    key = init_card_master(state)
    os.chmod(key, 0o640)
    assert "chmod 600" in cards_line()
    os.chmod(key, 0o600)
    assert cards_line().startswith("OK   cards: cards prove themselves: desfire")
