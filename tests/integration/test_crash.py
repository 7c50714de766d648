"""Power cuts: a writer killed with SIGKILL at random moments loses nothing it confirmed (R14)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys

import pytest

from edged.device.journal import verify_journal
from edged.device.keys import load_keys
from tests.conftest import size

pytestmark = pytest.mark.integration

KILLS = size("journal_crash_kills")


@pytest.mark.slow
def test_sigkill_loses_no_returned_append_and_leaves_no_gap(state_dir):
    """R14, R9: after every SIGKILL, verify passes and every returned append is present."""
    keys = load_keys(state_dir)
    trusted = {keys.key_id: keys.public_key}
    db = state_dir / "journal.db"
    rnd = random.Random(20261125)
    confirmed = 0
    for k in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.append_loop", str(state_dir), str(k)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        # Let it confirm a random number of appends, then cut power mid-stream.
        for _ in range(rnd.randint(1, 40)):
            line = child.stdout.readline()
            assert line, "writer died on its own"
            confirmed = max(confirmed, int(line))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        res = verify_journal(db, trusted)
        assert res.ok, f"after kill {k}: {res.summary()}"
        assert res.head_seq >= confirmed, (
            f"after kill {k}: confirmed {confirmed} but head {res.head_seq}"
        )
    assert confirmed > KILLS
