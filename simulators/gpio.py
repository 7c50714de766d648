"""Simulated wiring on gpiozero's MockFactory: the real GPIO drivers, simulated switches.

:class:`SimGpio` builds edged's own GPIO drivers (doors, cabinets, indicators and the
matrix keypad) on a ``MockFactory`` and drives their input pins the way the physical
switches would: open and close a door or a cabinet, press the exit button, trip the
tamper switch, press keypad keys. Outputs (relays, buzzer, LEDs) are read back from the
pins themselves.
"""

from __future__ import annotations

import threading
from typing import Any

from edged.drivers.gpio import GpioCabinets, GpioDoors, GpioIndicators, GpioPresence
from edged.drivers.keypad import LAYOUTS, MatrixKeypad
from gpiozero.pins.mock import MockFactory, MockPin

from edged.clock import Clock
from edged.device.config import Config


class _RowPin(MockPin):
    """A keypad row output that tells the matrix when its level changes."""

    def __init__(self, factory: Any, info: Any, matrix: KeypadMatrix | None = None) -> None:
        super().__init__(factory, info)
        self.matrix = matrix

    def _change_state(self, value: bool) -> bool:
        changed = super()._change_state(value)
        if changed and self.matrix is not None:
            self.matrix.update()
        return changed


class _TracePin(MockPin):
    """A relay output that keeps its whole history and calls watchers on every change,
    so tests can check what was recorded at the instant a door was released."""

    def __init__(self, factory: Any, info: Any) -> None:
        super().__init__(factory, info)
        self.history: list[bool] = []
        self.watchers: list[Any] = []

    def _change_state(self, value: bool) -> bool:
        changed = super()._change_state(value)
        if changed and self.function == "output":
            self.history.append(value)
            for w in self.watchers:
                w(value)
        return changed


class KeypadMatrix:
    """The key switches between row and column wires: a pressed key pulls its column low
    while its row is driven low."""

    def __init__(self, factory: MockFactory, rows: tuple[int, ...], cols: tuple[int, ...]) -> None:
        self.layout = LAYOUTS[len(cols)]
        self._rows = [factory.pin(p, pin_class=_RowPin, matrix=self) for p in rows]
        self._col_nums = cols
        self._factory = factory
        self._pressed: set[tuple[int, int]] = set()
        self._lock = threading.RLock()

    def _where(self, key: str) -> tuple[int, int]:
        for r, line in enumerate(self.layout):
            if key in line:
                return r, line.index(key)
        raise ValueError(f"no key {key!r} on this keypad ({''.join(self.layout)})")

    def update(self) -> None:
        with self._lock:
            for c, num in enumerate(self._col_nums):
                pin = self._factory.pin(num)
                if pin.function != "input":
                    continue
                low = any(pc == c and not self._rows[pr].state for pr, pc in self._pressed)
                if low:
                    pin.drive_low()
                else:
                    pin.drive_high()

    def press(self, key: str) -> None:
        """Press and release one key."""
        where = self._where(key)
        with self._lock:
            self._pressed.add(where)
            self.update()
            self._pressed.discard(where)
            self.update()


class SimGpio:
    """Every GPIO device of a config, on one MockFactory, with physical controls."""

    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        self.config = config
        self.factory = MockFactory()
        g = config.gpio
        # Row pins must exist as _RowPin before the keypad driver claims them.
        self.matrices = {
            door: KeypadMatrix(self.factory, k.rows, k.cols)
            for door, k in config.keypads.items()
            if k.backend == "matrix"
        }
        self.relay_pins = {
            name: self.factory.pin(d.relay_pin, pin_class=_TracePin)
            for name, d in config.doors.items()
        }
        self.doors = GpioDoors(config.doors, g, pin_factory=self.factory, clock=clock)
        self.cabinets = GpioCabinets(config.cabinets, g, pin_factory=self.factory, clock=clock)
        self.indicators = GpioIndicators(config.indicators, pin_factory=self.factory)
        self.presence = GpioPresence(config.areas, g, pin_factory=self.factory, clock=clock)
        self.keypads = {
            door: MatrixKeypad(
                config.keypads[door].rows,
                config.keypads[door].cols,
                pin_factory=self.factory,
                clock=clock,
                name=door,
            )
            for door in self.matrices
        }
        # The world at power-on: doors shut, cabinets locked, lid on, buttons up.
        for name in config.doors:
            self.set_door(name, closed=True)
            button = config.doors[name].exit_button_pin
            if button is not None:
                self._pin(button).drive_high()
        for name in config.cabinets:
            self.set_cabinet(name, locked=True)
        if g.tamper_pin is not None:
            self.set_tamper(False)
        for a in config.areas.values():  # nobody moving: each PIR's contact closed
            if a.presence_pin is not None:
                self.set_motion(a.name, False)

    def _pin(self, num: int) -> MockPin:
        return self.factory.pin(num)

    def _switch(self, num: int, closed: bool) -> None:
        # Pull-up wiring: a closed switch pulls the input low.
        closed_level_low = self.config.gpio.pull_up
        pin = self._pin(num)
        if closed == closed_level_low:
            pin.drive_low()
        else:
            pin.drive_high()

    # -- physical controls -------------------------------------------------------------
    def set_door(self, door: str, *, closed: bool) -> None:
        d = self._door(door)
        self._switch(d.contact_pin, closed == (d.contact_closed_when == "switch_closed"))

    def press_exit(self, door: str) -> None:
        d = self._door(door)
        if d.exit_button_pin is None:
            raise ValueError(f"door {door!r} has no exit button")
        self._switch(d.exit_button_pin, True)
        self._switch(d.exit_button_pin, False)

    def set_cabinet(self, cabinet: str, *, locked: bool) -> None:
        c = self.config.cabinets.get(cabinet)
        if c is None:
            raise ValueError(f"no cabinet {cabinet!r}; have {sorted(self.config.cabinets)}")
        self._switch(c.pin, locked == (c.locked_when == "switch_closed"))

    def set_motion(self, area: str, moving: bool) -> None:
        a = self.config.areas.get(area)
        if a is None or a.presence_pin is None:
            raise ValueError(f"area {area!r} has no presence sensor (areas.{area}.presence_pin)")
        self._switch(a.presence_pin, not moving)  # the contact opens on motion
        self.presence.wait_reading(area, moving)

    def set_tamper(self, active: bool) -> None:
        pin = self.config.gpio.tamper_pin
        if pin is None:
            raise ValueError("no tamper switch configured (gpio.tamper_pin)")
        self._switch(pin, not active)  # normally closed loop

    def press_keys(self, door: str, keys: str) -> None:
        matrix = self.matrices.get(door)
        if matrix is None:
            raise ValueError(f"no matrix keypad at door {door!r}")
        for k in keys:
            matrix.press(k)

    def _door(self, door: str) -> Any:
        d = self.config.doors.get(door)
        if d is None:
            raise ValueError(f"no door {door!r}; have {sorted(self.config.doors)}")
        return d

    # -- read back ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Outputs as the pins show them, and the physical inputs."""
        return {
            "doors": {
                n: {
                    "relay_energised": self.doors.relay_energised(n),
                    "unlocked": self.doors.unlocked(n),
                    "closed": self.doors.door_closed(n),
                }
                for n in self.config.doors
            },
            "cabinets": self.cabinets.read_all(),
            "cabinet_locks_released": self.cabinets.released(),
            "tamper": self.doors.tamper_active(),
            "motion": self.presence.moving(),
            "indicators": self.indicators.states(),
        }

    def relay_levels(self, door: str) -> list[bool]:
        """Every level the relay pin was driven to since it became an output."""
        return list(self.relay_pins[door].history)

    def watch_relay(self, door: str, fn: Any) -> None:
        """Call ``fn(level)`` whenever the relay pin of ``door`` changes."""
        self.relay_pins[door].watchers.append(fn)

    def close(self) -> None:
        for dev in (*self.keypads.values(), self.presence, self.indicators, self.cabinets,
                    self.doors):  # fmt: skip
            dev.close()
        self.factory.reset()
