"""A 3x4 or 4x4 matrix keypad scanned over GPIO with gpiozero, driven by interrupts.

Idle, every row is driven low and the columns (pulled up) are watched for a falling
edge; only when a key goes down are the rows scanned one at a time to find it. Nothing
polls, and a held key produces one event.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from gpiozero import DigitalInputDevice, OutputDevice
from gpiozero.exc import GPIOZeroError

from edged.clock import Clock, SystemClock
from edged.core.events import KeypadKey
from edged.device.hardware import Keypad
from edged.errors import DriverInitError

LAYOUTS = {
    3: ("123", "456", "789", "*0#"),
    4: ("123A", "456B", "789C", "*0#D"),
}


class MatrixKeypad(Keypad):
    """Rows are outputs (active low), columns inputs with pull-ups."""

    def __init__(
        self,
        rows: Sequence[int],
        cols: Sequence[int],
        *,
        pin_factory: object | None = None,
        clock: Clock | None = None,
        name: str = "keypad",
        debounce_ms: int = 0,
    ) -> None:
        super().__init__(name)
        if len(rows) != 4 or len(cols) not in LAYOUTS:
            raise DriverInitError(f"{name}: need 4 rows and 3 or 4 columns")
        self.layout = LAYOUTS[len(cols)]
        self._clock = clock or SystemClock()
        self._scan_lock = threading.Lock()
        self._rows: list[OutputDevice] = []
        self._cols: list[DigitalInputDevice] = []
        try:
            for p in rows:
                # active_high=False: "on" drives the row low; idle = all rows on.
                self._rows.append(
                    OutputDevice(p, active_high=False, initial_value=True, pin_factory=pin_factory)
                )
            for p in cols:
                self._cols.append(
                    DigitalInputDevice(
                        p,
                        pull_up=True,
                        bounce_time=(debounce_ms / 1000) or None,
                        pin_factory=pin_factory,
                    )
                )
        except (GPIOZeroError, OSError, RuntimeError) as e:
            self._close()
            raise DriverInitError(f"{name}: GPIO setup failed: {e}") from None

    def _start(self) -> None:
        for c, col in enumerate(self._cols):
            col.when_activated = lambda _b, c=c: self._key_down(c)

    def _key_down(self, col: int) -> None:
        # Re-entrant edges fire while rows are switched during the scan: ignore them.
        if not self._scan_lock.acquire(blocking=False):
            return
        try:
            found = None
            for r in range(len(self._rows)):
                for i, row in enumerate(self._rows):
                    row.value = i == r
                if self._cols[col].is_active:
                    found = r
                    break
        finally:
            for row in self._rows:
                row.value = True
            self._scan_lock.release()
        if found is not None:
            self._emit(
                KeypadKey(
                    keypad=self.name, key=self.layout[found][col], mono_ns=self._clock.mono_ns()
                )
            )

    def _close(self) -> None:
        for d in [*self._cols, *self._rows]:
            d.close()
