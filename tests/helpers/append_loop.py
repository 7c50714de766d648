"""Child process for crash tests: appends forever, printing each seq once it has returned.

Usage: python -m tests.helpers.append_loop STATE_DIR SEED
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from edged.clock import SystemClock
from edged.device.journal import Journal
from edged.device.keys import load_keys


def main() -> None:
    state_dir, seed = Path(sys.argv[1]), int(sys.argv[2])
    rnd = random.Random(seed)
    with Journal(
        state_dir / "journal.db", load_keys(state_dir), SystemClock(), checkpoint_every=37
    ) as j:
        print("ready", flush=True)
        n = 0
        while True:
            n += 1
            if rnd.random() < 0.3:
                recs = j.append_many(
                    [("door.granted", {"n": n, "i": i}) for i in range(rnd.randint(2, 20))]
                )
                seq = recs[-1].seq
            else:
                seq = j.append("door.granted", n=n).seq
            # Printed only after the append returned, i.e. after the commit.
            print(seq, flush=True)


if __name__ == "__main__":
    main()
