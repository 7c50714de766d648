"""Child process for the daemon crash test: a daemon on simulated hardware under a
scripted stream of entries and exits, writing a witness line each time the relay is
energised: the journal's last committed record at that instant.

Usage: python -m tests.helpers.door_loop STATE_DIR CONFIG
"""

from __future__ import annotations

import itertools
import sqlite3
import sys
import threading
from pathlib import Path

from edged.core.events import CardPresented, ExitButton, KeypadKey
from edged.device.config import load_config
from edged.device.daemon import Daemon
from edged.device.keys import load_keys
from edged.log import configure_logging
from edged.protocol.privacy import CardFingerprinter


def main() -> None:
    state, config = Path(sys.argv[1]), Path(sys.argv[2])
    configure_logging(open(state / "child.log", "a"), json=True)  # noqa: SIM115
    cfg = load_config(config, state_dir=state)
    # pcscd is the test's: a killed daemon must not take it along or leave one behind.
    d = Daemon(cfg, simulate=True, control_socket=False, sim_pcscd=False)
    t = threading.Thread(target=lambda: d.run(install_signals=False), daemon=True)
    t.start()
    while not (d.running.wait(0.1) or d.stopped.is_set()):
        pass
    if not d.running.is_set():
        sys.exit(3)
    gpio = d.rig.gpio
    # Start-up never touched the relay.
    print("ready", gpio.relay_levels("main") == [], flush=True)
    witness = open(state / "witness.log", "a", buffering=1)  # noqa: SIM115
    db = state / "journal.db"

    def on_relay(level: bool) -> None:
        if level:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            # The journal adds a checkpoint after every 1000th record in the same write:
            # the reason for the unlock is the newest record that is not one.
            seq, rtype = conn.execute(
                "SELECT seq, type FROM records WHERE type != 'checkpoint' ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            conn.close()
            witness.write(f"E {seq} {rtype}\n")

    gpio.watch_relay("main", on_relay)
    fp = CardFingerprinter(load_keys(state).fingerprint_secret)
    card = fp.fingerprint(bytes.fromhex("012E4CD9A1B2C3D4"))
    for n in itertools.count():
        before = d.observers.processed_count
        d.queue.put(CardPresented(reader="entry", card=card, kind="felica"))
        for k in "1#0#":
            d.queue.put(KeypadKey(keypad="main", key=k))
        d.queue.put(CardPresented(reader="exit", card=card, kind="felica"))
        d.queue.put(KeypadKey(keypad="main", key="#"))
        d.queue.put(ExitButton(door="main"))
        d.observers.wait_processed(lambda p, b=before: p.n >= b + 8, after=before)
        print(n, flush=True)


if __name__ == "__main__":
    main()
