"""A USB keypad (HID) read through Linux evdev.

The ``evdev`` package is imported only when this backend is configured. A reader thread
waits in ``select`` on the device and a wake-up pipe, so ``close()`` ends it at once and
nothing polls.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading

from edged.clock import Clock, SystemClock
from edged.core.events import DriverFault, KeypadKey
from edged.device.hardware import Keypad
from edged.errors import DriverInitError
from edged.log import get_logger

log = get_logger("drivers.evdev_keypad")

# Linux input key names -> keypad symbols. Enter submits, Escape/Backspace clear.
KEYMAP = {
    **{f"KEY_{d}": str(d) for d in range(10)},
    **{f"KEY_KP{d}": str(d) for d in range(10)},
    "KEY_KPASTERISK": "*",
    "KEY_ESC": "*",
    "KEY_BACKSPACE": "*",
    "KEY_KPENTER": "#",
    "KEY_ENTER": "#",
}


def key_symbol(keycode: str | list[str]) -> str | None:
    """The keypad symbol for an evdev key name (or list of aliases), or None to ignore."""
    names = keycode if isinstance(keycode, list) else [keycode]
    for n in names:
        if n in KEYMAP:
            return KEYMAP[n]
    return None


class EvdevKeypad(Keypad):
    """Keys from ``/dev/input/...``; the device is grabbed so keys do not reach a console."""

    def __init__(self, device: str, *, clock: Clock | None = None, name: str = "keypad") -> None:
        super().__init__(name)
        try:
            import evdev
        except ImportError:
            raise DriverInitError(f"{name}: evdev backend needs: pip install evdev") from None
        self._evdev = evdev
        try:
            self._dev = evdev.InputDevice(device)
            self._dev.grab()
        except OSError as e:
            raise DriverInitError(f"{name}: cannot open {device}: {e.strerror}") from None
        self._clock = clock or SystemClock()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-evdev", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ecodes = self._evdev.ecodes
        while True:
            ready, _, _ = select.select([self._dev.fd, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                events = list(self._dev.read())
            except OSError as e:
                self._emit(
                    DriverFault(
                        device=self.name,
                        reason=f"keypad read failed: {e}",
                        mono_ns=self._clock.mono_ns(),
                    )
                )
                return
            for ev in events:
                if ev.type == ecodes.EV_KEY and ev.value == 1:  # key down only
                    sym = key_symbol(ecodes.KEY.get(ev.code, ""))
                    if sym is not None:
                        self._emit(
                            KeypadKey(keypad=self.name, key=sym, mono_ns=self._clock.mono_ns())
                        )

    def _close(self) -> None:
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._dev.ungrab()
        self._dev.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
