"""The example configuration as an installer would edit it for this machine: the
hardware installation (not --simulate) with MockFactory pins (no GPIO here), the
simulated readers' PC/SC names, the server room's keypad on pins (no USB keypad) and a
simulated LCD (no I2C bus)."""

from __future__ import annotations

import re
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent.parent / "config" / "edged.toml"
READERS = ("entry", "exit", "server-entry", "server-exit", "rack")


def this_machine(text: str | None = None) -> str:
    t = EXAMPLE.read_text() if text is None else text
    t = t.replace('backend = "default"', 'backend = "mock"', 1)
    for name in READERS:
        t, n = re.subn(
            rf'(\[readers\.{re.escape(name)}\]\npcsc_name = )"[^"]*"', rf'\1"edged-sim {name}"', t
        )
        assert n == 1, name
    t, n = re.subn(
        r'backend = "evdev".*\ndevice = .*\n',
        'backend = "matrix"\nrows = [11, 14, 15, 1]\ncols = [2, 3, 0]\n',
        t,
    )
    assert n == 1
    # No I2C bus on this machine: the door's LCD is the simulated one.
    t, n = re.subn(r'(\[displays\.main\][^\n]*\n)backend = "hd44780"', r'\1backend = "sim"', t)
    assert n == 1
    return t
