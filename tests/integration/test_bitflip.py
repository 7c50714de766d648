"""Flip bits of a real journal file, one at a time: each flip is caught by `verify`, or the
records read back unchanged (the bit was in free space or bookkeeping) (R9).

Default: 1,500 positions chosen at random (seeded); EDGED_LONG=1: every bit of the file.
"""

from __future__ import annotations

import random
import sqlite3

import pytest

from edged.clock import FakeClock
from edged.device.journal import Journal, verify_journal
from edged.errors import JournalCorruptError
from tests.conftest import size

pytestmark = pytest.mark.integration

SAMPLE = size("bitflip_positions")


def content(path):
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute(
                "SELECT seq, type, ts, prev, hash, sig, key_id, body FROM records ORDER BY seq"
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None


def test_every_flip_is_caught_or_harmless(tmp_path, keys):
    """R9: no single-bit change alters a record without `verify` noticing."""
    path = tmp_path / "journal.db"
    clock = FakeClock()
    with Journal(path, keys, clock, checkpoint_every=8) as j:
        for i in range(20):
            clock.advance(1)
            j.append("door.granted", person=f"S{i:03d}", area="handling", reason="ok")
    original = path.read_bytes()
    want = content(path)
    trusted = {keys.key_id: keys.public_key}
    bits = len(original) * 8
    positions = random.Random(7).sample(range(bits), SAMPLE) if SAMPLE else range(bits)
    caught = harmless = 0
    target = tmp_path / "flipped.db"
    for pos in positions:
        data = bytearray(original)
        data[pos // 8] ^= 1 << (pos % 8)
        target.write_bytes(data)
        try:
            ok = verify_journal(target, trusted).ok
        except JournalCorruptError:
            ok = False
        if not ok:
            caught += 1
            continue
        # verify passed: then the records must read back exactly as written.
        assert content(target) == want, f"bit {pos} changed a record undetected"
        harmless += 1
    print(
        f"\nbit flips: {caught + harmless} tried over {bits} bits, {caught} caught,"
        f" {harmless} provably harmless, 0 undetected"
    )
    assert caught > 0 and caught + harmless == len(positions)
