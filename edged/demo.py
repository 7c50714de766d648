"""``edged demo``: a narrated walk through what edged records, for a person to watch.

This stage shows the foundation: device keys, signed and chained records in
``DIR/journal.db``, and a verification of the whole file. Later stages drive the full
simulated door through the same command.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edged.clock import SystemClock
from edged.errors import PrivacyError
from edged.journal import Journal, verify_journal
from edged.keys import init_keys, key_paths, load_keys
from edged.privacy import CardFingerprinter


def _say(text: str, pause: float) -> None:
    print(text, flush=True)
    if pause:
        time.sleep(pause)  # narration pacing for a human watcher, never in tests


def run_demo(state_dir: Path, *, fast: bool = False) -> int:
    """Create or reuse keys, write a short story of records, verify them; exit code."""
    pause = 0.0 if fast else 0.8
    state_dir = state_dir.resolve()
    sk_path, _pk, _fp = key_paths(state_dir)
    if sk_path.exists():
        keys = load_keys(state_dir)
        _say(f"== using the device key in {state_dir} (key id {keys.key_id})", pause)
    else:
        keys = init_keys(state_dir)
        _say(f"== created a device key in {state_dir} (key id {keys.key_id}), files 0600", pause)

    fp = CardFingerprinter(keys.fingerprint_secret)
    db = state_dir / "journal.db"
    clock = SystemClock()
    staff_card = fp.fingerprint(bytes.fromhex("012E4CD9A1B2C3D4"))  # a FeliCa IDm
    with Journal(db, keys, clock, checkpoint_every=50) as j:
        start, _ = j.head()
        _say(
            f"== journal {db}: head seq {start}; every record below is committed before"
            " it is printed",
            pause,
        )
        story = [
            ("daemon.started", {"device": "demo-door-1", "mode": "demo"}),
            (
                "door.granted",
                {
                    "area": "handling",
                    "door": "main",
                    "person": "P0001",
                    "card": staff_card,
                    "reason": "ok",
                    "purpose": "payroll",
                },
            ),
            (
                "door.denied",
                {
                    "area": "server-room",
                    "door": "server",
                    "card": staff_card,
                    "reason": "pin_wrong",
                },
            ),
            ("alarm.door_held_open", {"area": "handling", "door": "main", "seconds": 45}),
            (
                "lockcheck.confirmed",
                {
                    "area": "handling",
                    "person": "P0001",
                    "cabinets": {"cab-A": "locked", "cab-B": "locked"},
                },
            ),
        ]
        for rtype, fields in story:
            rec = j.append(rtype, **fields)
            _say(
                f"   seq {rec.seq:>4} {rec.type:<24} hash {rec.hash[:16]}…  "
                + json.dumps(fields, ensure_ascii=False),
                pause,
            )
        try:
            j.append("note", text="番号 123456789018")
        except PrivacyError as e:
            _say(f"== refused as it must be (R11): {e}", pause)
        cp = j.checkpoint()
        _say(f"   seq {cp.seq:>4} {cp.type:<24} signed head {cp.fields['head_seq']}", pause)

    result = verify_journal(db, {keys.key_id: keys.public_key})
    _say(f"== edged verify --db {db}", 0)
    print(result.summary())
    return 0 if result.ok else 1
