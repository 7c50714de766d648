"""A keypad with no wiring at all: keys typed by a test or by ``edged sim keys``.

For configurations with ``keypad.backend = "sim"`` (and the evdev keypad under
``--simulate``). The matrix keypad is simulated at the pin level instead, in
:mod:`edged.simulators.gpio`, so its real driver runs.
"""

from __future__ import annotations

from edged.clock import Clock, SystemClock
from edged.core.events import KeypadKey
from edged.device.hardware import Keypad
from edged.errors import DriverOperationError

KEYS = frozenset("0123456789*#ABCD")


class SimKeypad(Keypad):
    """Emits :class:`KeypadKey` for each key given to :meth:`press`."""

    def __init__(self, *, clock: Clock | None = None, name: str = "keypad") -> None:
        super().__init__(name)
        self._clock = clock or SystemClock()

    def _start(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def press(self, keys: str) -> None:
        """Type ``keys`` (``0-9 * # A-D``) in order."""
        bad = set(keys) - KEYS
        if bad:
            raise DriverOperationError(f"{self.name}: no key(s) {sorted(bad)} on a keypad")
        for k in keys:
            self._emit(KeypadKey(keypad=self.name, key=k, mono_ns=self._clock.mono_ns()))
