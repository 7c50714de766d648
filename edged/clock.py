"""Clocks are injected: the core and the journal never read the wall clock themselves.

A Raspberry Pi has no real-time clock, so every reading carries whether the kernel
believes its time is synchronised (NTP), and records say so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    """What edged needs to know about time."""

    def wall_ms(self) -> int:
        """UTC wall-clock time in milliseconds since the epoch."""
        ...

    def mono_ns(self) -> int:
        """Monotonic nanoseconds; never jumps, meaningless across boots."""
        ...

    def synced(self) -> bool:
        """True when the wall clock is known to be synchronised."""
        ...


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>; only `status` is read, the rest sizes the buffer.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    ]


_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # find_library may run ldconfig: do it once, not per record.
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


def kernel_clock_synced() -> bool:
    """Ask the kernel (adjtimex) whether NTP has synchronised the clock, as timedatectl does."""
    libc = _libc()
    if libc is None:
        return False
    try:
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return False
    return state != _TIME_ERROR and state >= 0 and not (tx.status & _STA_UNSYNC)


class SystemClock:
    """The machine's clocks. ``assume_synced`` overrides the kernel's answer (config policy)."""

    def __init__(self, assume_synced: bool | None = None) -> None:
        self._assume = assume_synced

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def mono_ns(self) -> int:
        return time.monotonic_ns()

    def synced(self) -> bool:
        if self._assume is not None:
            return self._assume
        return kernel_clock_synced()


@dataclass
class FakeClock:
    """A clock that moves only when told to; for tests and simulations."""

    wall: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    mono: int = 1_000_000_000
    is_synced: bool = True

    def wall_ms(self) -> int:
        return self.wall

    def mono_ns(self) -> int:
        return self.mono

    def synced(self) -> bool:
        return self.is_synced

    def advance(self, seconds: float) -> None:
        """Move both clocks forward together."""
        self.wall += int(seconds * 1000)
        self.mono += int(seconds * 1_000_000_000)


def read_boot_id(path: Path = Path("/proc/sys/kernel/random/boot_id")) -> str:
    """The kernel's id for this boot; records of one boot share it."""
    try:
        return path.read_text().strip()
    except OSError:
        # Not Linux: a random id per process is the honest fallback.
        return str(uuid.uuid4())
