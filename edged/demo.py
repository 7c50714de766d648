"""``edged demo``: the daemon on simulated hardware, with a scenario a person can follow.

Everything below the door is real software: pcscd with the vpcd virtual reader, pyscard,
gpiozero on its MockFactory, the signed journal. Only the card, the wires and the
switches are simulated. Each step prints the records it caused, as committed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from edged.cli_format import format_records
from edged.config import load_config
from edged.control import SimController
from edged.daemon import Daemon
from edged.errors import EdgedError
from edged.journal import verify_journal
from edged.keys import init_keys, key_paths, load_keys
from edged.log import configure_logging

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "edged.toml"
STAFF_CARD = "012E4CD9A1B2C3D4"  # a FeliCa IDm; only its keyed fingerprint is ever stored


def _say(text: str, pause: float) -> None:
    print(text, flush=True)
    if pause:
        time.sleep(pause)  # pacing for a human watcher; --fast skips it


def run_demo(state_dir: Path, *, fast: bool = False, config: Path | None = None) -> int:
    """Run the scenario; returns 0 when every step behaved and the journal verifies."""
    pause = 0.0 if fast else 1.2
    state_dir = state_dir.resolve()
    cfg_path = config or REPO_CONFIG
    if not cfg_path.exists():
        print(f"edged demo: no configuration at {cfg_path}; pass --config FILE")
        return 2
    cfg = load_config(cfg_path, state_dir=state_dir)
    sk, _pk, _fp = key_paths(state_dir)
    if sk.exists():
        keys = load_keys(state_dir)
        _say(f"== device key in {state_dir} (key id {keys.key_id})", pause)
    else:
        keys = init_keys(state_dir)
        _say(f"== created a device key in {state_dir} (key id {keys.key_id}); files 0600", pause)

    log_path = state_dir / "edged.log"
    with open(log_path, "a", encoding="utf-8") as log_file:
        configure_logging(log_file, json=True)
        daemon = Daemon(cfg, simulate=True, control_socket=False)
        runner = threading.Thread(
            target=lambda: daemon.run(install_signals=False), name="daemon", daemon=True
        )
        runner.start()
        while not (daemon.running.wait(0.2) or daemon.stopped.is_set()):
            pass
        if not daemon.running.is_set():
            print(f"edged demo: the daemon did not start; see {log_path}")
            return 2
        _say(
            f"== daemon running on simulated hardware (site {cfg.site}, device {cfg.device});"
            f" its log: {log_path}",
            pause,
        )
        ctl = SimController(daemon)
        ok = True
        try:
            ok = _scenario(ctl, pause)
        except EdgedError as e:
            print(f"edged demo: step failed: {e}")
            ok = False
        finally:
            daemon.request_stop()
            runner.join(60)
    db = state_dir / "journal.db"
    result = verify_journal(db, {keys.key_id: keys.public_key})
    _say(f"== edged verify --db {db}", 0)
    print(result.summary())
    return 0 if ok and result.ok else 1


def _step(
    ctl: SimController, title: str, req: dict[str, Any], pause: float, expect: str | None = None
) -> bool:
    print(f"\n-- {title}", flush=True)
    try:
        resp = ctl.dispatch(req)
    except Exception as e:  # one failed step is reported, the story goes on
        print(f"   failed: {e}")
        return False
    for line in format_records(resp.get("records", [])):
        print("   " + line, flush=True)
    if pause:
        time.sleep(pause)
    types = [r["type"] for r in resp.get("records", [])]
    if expect is not None and expect not in types:
        print(f"   (expected a {expect} record)")
        return False
    return True


def _scenario(ctl: SimController, pause: float) -> bool:
    steps = [
        (
            "A member of staff taps a card at the entry reader. No access list is loaded yet,"
            " so the door stays shut and the denial is recorded, with a keyed fingerprint"
            " instead of the card number.",
            {"cmd": "tap", "card": STAFF_CARD, "reader": "entry"},
            "door.denied",
        ),
        (
            "Someone inside presses the exit button: the door unlocks for exit.",
            {"cmd": "exit-button"},
            "door.exit_request",
        ),
        ("They open the door...", {"cmd": "door", "action": "open"}, "door.opened"),
        (
            "...and close it; the strike relocks at once.",
            {"cmd": "door", "action": "close"},
            "door.closed",
        ),
        (
            "The door is pushed open from outside without a card: forced-open alarm"
            " (record, red LED, buzzer).",
            {"cmd": "door", "action": "open"},
            "alarm.door_forced",
        ),
        (
            "It is shut again; the alarm clears.",
            {"cmd": "door", "action": "close"},
            "alarm.cleared",
        ),
        (
            "A card that answers garbage is recorded as unreadable, not trusted.",
            {"cmd": "tap", "card": STAFF_CARD, "behaviour": "garbage"},
            "card.unreadable",
        ),
        (
            "Cabinet cab-a is unlocked...",
            {"cmd": "cabinet", "name": "cab-a", "action": "open"},
            "cabinet.unlocked",
        ),
        (
            "...and locked again.",
            {"cmd": "cabinet", "name": "cab-a", "action": "close"},
            "cabinet.locked",
        ),
        (
            "Someone opens the reader enclosure: tamper alarm.",
            {"cmd": "tamper", "active": True},
            "alarm.tamper",
        ),
        ("The lid goes back on.", {"cmd": "tamper", "active": False}, "tamper.cleared"),
        (
            "The exit reader is unplugged: reader-lost alarm.",
            {"cmd": "reader", "reader": "exit", "action": "unplug"},
            "alarm.reader_lost",
        ),
        (
            "It is plugged back in.",
            {"cmd": "reader", "reader": "exit", "action": "plug"},
            "reader.found",
        ),
    ]
    ok = True
    for title, req, expect in steps:
        ok &= _step(ctl, title, req, pause, expect)
    return ok
