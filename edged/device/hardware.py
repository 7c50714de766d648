"""The interfaces the core depends on, and the registry that picks a backend by name.

In the style of gpiozero and python-can: :class:`Device` does the common work (lifecycle,
safe event emission, logging); a backend overrides a small set of hooks:

- must override ``_start()`` (begin watching; emit events through ``self._emit``) and
  ``_close()`` (stop threads, release hardware; called once);
- may override ``_describe()`` (extra fields for logs).

Real backends live in ``drivers/`` (``edged.drivers``), simulated ones in ``simulators/``
(``edged.simulators``); both are named in :mod:`edged.device.backends` and imported
lazily, only when configured.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, Self

from edged.core.events import Event, EventSink
from edged.device import backends
from edged.errors import DriverInitError
from edged.log import get_logger

log = get_logger("hardware")


class Device(ABC):
    """Lifecycle shared by every driver: ``start(sink)`` once, ``close()`` any number of times.

    Events go to ``sink`` (the core's queue). A sink that raises is logged, never allowed to
    kill the driver's thread.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._sink: EventSink | None = None
        self._closed = False
        self._life = threading.Lock()

    def start(self, sink: EventSink) -> None:
        """Begin delivering events to ``sink``."""
        with self._life:
            if self._closed:
                raise DriverInitError(f"{self.name}: cannot start a closed device")
            if self._sink is not None:
                raise DriverInitError(f"{self.name}: already started")
            self._sink = sink
        self._start()
        log.info(
            "device_started", device=self.name, backend=type(self).__name__, **self._describe()
        )

    def close(self) -> None:
        """Stop and release the hardware; idempotent."""
        with self._life:
            if self._closed:
                return
            self._closed = True
        try:
            self._close()
        except Exception as e:  # closing must never raise into shutdown paths
            log.error("device_close_failed", device=self.name, error=repr(e))

    @property
    def closed(self) -> bool:
        return self._closed

    def _emit(self, event: Event) -> None:
        sink = self._sink
        if sink is None or self._closed:
            return
        try:
            sink(event)
        except Exception as e:
            log.error(
                "event_sink_failed",
                device=self.name,
                event_type=type(event).__name__,
                error=repr(e),
            )

    @abstractmethod
    def _start(self) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...

    def _describe(self) -> dict[str, Any]:
        return {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CardReader(Device):
    """Watches one or more card readers; emits CardPresented / CardRemoved / CardUnreadable /
    ReaderLost / ReaderFound. Logical reader names ("entry", "exit") come from the config."""


class DoorIO(Device):
    """Door strikes (outputs) and door contacts, exit buttons, tamper switch (inputs).

    Emits DoorContact, ExitButton, Tamper. Backends must also override
    :meth:`set_unlocked` and :meth:`door_closed`.
    """

    @abstractmethod
    def set_unlocked(self, door: str, unlocked: bool) -> None:
        """Drive the lock of ``door``; the backend maps this to relay polarity and mode."""

    @abstractmethod
    def door_closed(self, door: str) -> bool:
        """Current reading of the door contact."""

    @abstractmethod
    def tamper_active(self) -> bool:
        """Current reading of the tamper switch (False when none is fitted)."""


class CabinetSensors(Device):
    """Reed switches of cabinets and racks, and the electric locks of those that have one;
    emits CabinetChanged. Must override :meth:`read_all`."""

    @abstractmethod
    def read_all(self) -> dict[str, bool]:
        """Every monitored cabinet: True when it reads locked (R6, R7)."""

    def set_released(self, cabinet: str, released: bool) -> None:
        """Release or hold a cabinet's electric lock (R17)."""
        raise DriverInitError(f"cabinets.{cabinet}: this backend drives no electric locks")

    def released(self) -> dict[str, bool]:
        """Each electric lock: True while released."""
        return {}


class PresenceSensors(Device):
    """Each area's presence sensor (a PIR); emits Presence. Must override :meth:`moving`."""

    @abstractmethod
    def moving(self) -> dict[str, bool]:
        """Each area with a sensor: True while it sees motion (or its wire is cut)."""


class Indicators(Device):
    """Buzzer and LEDs. Must override :meth:`set`."""

    @abstractmethod
    def set(self, name: str, on: bool, blink: bool = False) -> None:
        """Switch ``buzzer``, ``green`` or ``red`` off, on, or blinking."""

    @abstractmethod
    def states(self) -> dict[str, str]:
        """Current mode of each indicator: ``off``, ``on`` or ``blink``."""


class Keypad(Device):
    """Emits KeypadKey for each key pressed."""


class Display(Device):
    """A character display at a door. Backends write the cells: ``_write`` gets each row
    already encoded for the HD44780 ROM and fitted to its width."""

    def __init__(self, name: str, *, cols: int = 16, rows: int = 2) -> None:
        super().__init__(name)
        self.cols, self.rows = cols, rows
        self.lines: list[str] = []

    def show(self, lines: list[str]) -> None:
        from edged.drivers.hd44780 import fit

        if lines == self.lines:
            return  # the bus is slow; a screen that did not change is not sent again
        self.lines = list(lines)
        self._write(fit(lines, self.cols, self.rows))

    @abstractmethod
    def _write(self, cells: list[bytes]) -> None:
        """Put these rows on the screen."""

    def _start(self) -> None:
        """A display sends no events."""

    def _close(self) -> None:
        """Nothing to release unless the backend says so."""


def backend_names(interface: str) -> list[str]:
    """Names a config may use for ``interface`` (:mod:`edged.device.backends`)."""
    return sorted(backends.names(interface))


def load_backend(interface: str, name: str) -> type[Device]:
    """The device class registered for (interface, name), with a clear error."""
    cls = backends.load(interface, name)
    if not (isinstance(cls, type) and issubclass(cls, Device)):
        raise DriverInitError(f"{interface}: backend {name!r} is not a device")
    return cls


def make_device(interface: str, backend: str, /, **kwargs: Any) -> Device:
    """Build a backend, turning any failure into DriverInitError naming the device."""
    cls = load_backend(interface, backend)
    try:
        return cls(**kwargs)
    except DriverInitError:
        raise
    except Exception as e:
        raise DriverInitError(f"{interface} backend {backend!r} failed to start: {e}") from None
