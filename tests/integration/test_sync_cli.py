"""The administrator's and the central side's commands, as real processes (R5, R13)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import EDGED, has_token, require_pcscd
from tests.helpers.daemon_proc import DaemonProc
from tests.helpers.site import ACL_EXAMPLE

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EDGED, *args], capture_output=True, text=True, timeout=60)


def test_keys_sign_publish_collect_end_to_end(tmp_path, mosquitto):
    require_pcscd()
    state, central, trust = tmp_path / "state", tmp_path / "central", tmp_path / "trust"
    assert run("keys", "init", "--state-dir", str(state)).returncode == 0
    admin = run("keys", "init", "--admin", "--state-dir", str(central))
    assert admin.returncode == 0 and "key id:" in admin.stdout
    assert run("keys", "init", "--collector", "--state-dir", str(central)).returncode == 0
    assert run("keys", "init", "--admin", "--state-dir", str(central)).returncode == 2
    (trust / "tokyo-hq").mkdir(parents=True)
    (trust / "tokyo-hq" / "door-3f-1.pub").write_text((state / "device_ed25519.pub").read_text())
    config = tmp_path / "edged.toml"
    config.write_text(
        (ROOT / "config" / "edged.toml").read_text()
        + (
            f'\n[sync]\nbroker = "127.0.0.1:{mosquitto.port}"\n'
            f'collector_pubkey = "{central}/collector_ed25519.pub"\n'
            f'admin_pubkey = "{central}/admin_ed25519.pub"\n'
        )
    )
    assert run("config", "check", str(config)).returncode == 0

    db = tmp_path / "central.db"
    collector = subprocess.Popen(
        [
            EDGED,
            "collect",
            "--broker",
            f"127.0.0.1:{mosquitto.port}",
            "--db",
            str(db),
            "--trust",
            str(trust),
            "--key",
            str(central / "collector_ed25519.key"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    daemon = DaemonProc(state, config)
    try:
        env = tmp_path / "acl.signed.json"
        signed = run(
            "acl",
            "sign",
            str(ACL_EXAMPLE),
            "--key",
            str(central / "admin_ed25519.key"),
            "--config",
            str(config),
            "--state-dir",
            str(state),
            "--version",
            "3",
            "--out",
            str(env),
        )
        assert signed.returncode == 0, signed.stderr
        assert "012E4CD9" not in env.read_text() and not has_token(env.read_text(), "4821")
        pub = run("acl", "publish", str(env), "--broker", f"127.0.0.1:{mosquitto.port}")
        assert pub.returncode == 0, pub.stderr
        applied = json.loads(daemon.wait_log('"acl.applied"', timeout=15))
        assert applied["version"] == 3 and applied["source"] == "mqtt"
        daemon.sim(cmd="exit-button")
        head = daemon.state()["journal"]["head_seq"]

        def stored() -> int:
            if not db.exists():
                return 0
            with sqlite3.connect(db) as c:
                return c.execute("SELECT count(*) FROM records").fetchone()[0]

        done = threading.Event()
        for _ in range(200):  # the collector commits as records arrive
            if stored() >= head:
                break
            done.wait(0.05)
        assert stored() >= head
        with sqlite3.connect(db) as c:
            seqs = [r[0] for r in c.execute("SELECT seq FROM records ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1))
        st = daemon.state()
        assert st["sync"]["connected"] is True
    finally:
        daemon.stop()
        collector.send_signal(signal.SIGTERM)
        collector.wait(20)
