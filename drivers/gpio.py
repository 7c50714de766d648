"""Door strikes, contacts, exit buttons, tamper, cabinet reeds, buzzer and LEDs via gpiozero.

The same classes run on a Raspberry Pi (gpiozero's default pin factory: lgpio) and in
simulation (gpiozero's ``MockFactory``, driven by :mod:`edged.simulators.gpio`): the pin
factory is the only thing that changes. gpiozero calls our callbacks from its own
thread; they only emit events.

Switch conventions: inputs use the internal pull-up by default, so a closed switch reads
as "active". A cut wire therefore reads as an *open* switch; the defaults make that the
alarming state (door open, cabinet unlocked, tamper active) so sabotage is never silent.
Inputs are plain ``DigitalInputDevice``s: ``Button`` adds a hold-timer thread per input
that polls every 100 ms, which a door controller does not need.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpiozero import DigitalInputDevice, DigitalOutputDevice, MotionSensor, OutputDevice
from gpiozero.exc import GPIOZeroError

from edged.clock import Clock, SystemClock
from edged.core.events import CabinetChanged, DoorContact, ExitButton, Presence, Tamper
from edged.device import backends
from edged.device.config import (
    AreaConfig,
    CabinetConfig,
    DoorConfig,
    GpioConfig,
    IndicatorConfig,
)
from edged.device.hardware import CabinetSensors, DoorIO, Indicators, PresenceSensors
from edged.errors import DriverInitError, DriverOperationError

Factory = Any  # gpiozero.Factory; typed loosely because gpiozero ships no type hints


def make_pin_factory(backend: str) -> Factory | None:
    """gpiozero pin factory by config name (:mod:`edged.device.backends`); None lets
    gpiozero choose (on a Pi: lgpio)."""
    cls = backends.load("pin_factory", backend)
    try:
        return cls() if cls is not None else None
    except (GPIOZeroError, OSError, RuntimeError) as e:
        raise DriverInitError(f"gpio: pin factory {backend!r} cannot start: {e}") from None


def _button(pin: int, gpio: GpioConfig, factory: Factory | None, what: str) -> DigitalInputDevice:
    try:
        return DigitalInputDevice(
            pin,
            pull_up=gpio.pull_up,
            bounce_time=(gpio.debounce_ms / 1000) or None,
            pin_factory=factory,
        )
    except (GPIOZeroError, OSError, RuntimeError) as e:
        raise DriverInitError(f"{what} (GPIO {pin}): {e}") from None


class GpioDoors(DoorIO):
    """Strike relays and door inputs for every configured door, plus the tamper switch.

    ``set_unlocked`` maps to the relay by mode: a fail-secure strike is energised to
    unlock; a fail-safe magnetic lock is energised to lock. Relays are created in the
    locked state, so a starting daemon never releases a door.
    """

    def __init__(
        self,
        doors: Mapping[str, DoorConfig],
        gpio: GpioConfig,
        *,
        pin_factory: Factory | None = None,
        clock: Clock | None = None,
        name: str = "doors",
    ) -> None:
        super().__init__(name)
        self._cfg = dict(doors)
        self._clock = clock or SystemClock()
        self._relays: dict[str, OutputDevice] = {}
        self._contacts: dict[str, DigitalInputDevice] = {}
        self._exits: dict[str, DigitalInputDevice] = {}
        self._tamper: DigitalInputDevice | None = None
        try:
            for d in self._cfg.values():
                try:
                    self._relays[d.name] = OutputDevice(
                        d.relay_pin,
                        active_high=d.relay_active_high,
                        initial_value=self._energised(d, unlocked=False),
                        pin_factory=pin_factory,
                    )
                except (GPIOZeroError, OSError, RuntimeError) as e:
                    raise DriverInitError(
                        f"doors.{d.name}.relay_pin (GPIO {d.relay_pin}): {e}"
                    ) from None
                self._contacts[d.name] = _button(
                    d.contact_pin, gpio, pin_factory, f"doors.{d.name}.contact_pin"
                )
                if d.exit_button_pin is not None:
                    self._exits[d.name] = _button(
                        d.exit_button_pin, gpio, pin_factory, f"doors.{d.name}.exit_button_pin"
                    )
            if gpio.tamper_pin is not None:
                self._tamper = _button(gpio.tamper_pin, gpio, pin_factory, "gpio.tamper_pin")
        except DriverInitError:
            self._close()
            raise

    @staticmethod
    def _energised(d: DoorConfig, *, unlocked: bool) -> bool:
        return unlocked if d.mode == "fail_secure" else not unlocked

    def _start(self) -> None:
        for name, b in self._contacts.items():
            b.when_activated = lambda _b, n=name: self._contact(n)
            b.when_deactivated = lambda _b, n=name: self._contact(n)
        for name, b in self._exits.items():
            b.when_activated = lambda _b, n=name: self._emit(
                ExitButton(door=n, mono_ns=self._clock.mono_ns())
            )
        if self._tamper is not None:
            t = self._tamper
            t.when_activated = lambda _b: self._tamper_changed()
            t.when_deactivated = lambda _b: self._tamper_changed()

    def _contact(self, door: str) -> None:
        self._emit(
            DoorContact(door=door, closed=self.door_closed(door), mono_ns=self._clock.mono_ns())
        )

    def _tamper_changed(self) -> None:
        self._emit(Tamper(active=self.tamper_active(), mono_ns=self._clock.mono_ns()))

    def set_unlocked(self, door: str, unlocked: bool) -> None:
        d = self._cfg.get(door)
        relay = self._relays.get(door)
        if d is None or relay is None:
            raise DriverOperationError(f"{self.name}: no door {door!r}")
        try:
            relay.value = self._energised(d, unlocked=unlocked)
        except (GPIOZeroError, OSError) as e:
            raise DriverOperationError(f"doors.{door}: relay did not switch: {e}") from None

    def relay_energised(self, door: str) -> bool:
        """The relay output as driven (for status and tests)."""
        return bool(self._relays[door].value)

    def unlocked(self, door: str) -> bool:
        d = self._cfg[door]
        return self.relay_energised(door) == (d.mode == "fail_secure")

    def door_closed(self, door: str) -> bool:
        d = self._cfg[door]
        pressed = self._contacts[door].is_active
        return pressed if d.contact_closed_when == "switch_closed" else not pressed

    def tamper_active(self) -> bool:
        # A normally-closed tamper loop: an open switch (lid off, wire cut) is tamper.
        return self._tamper is not None and not self._tamper.is_active

    def _close(self) -> None:
        for d in self._cfg.values():
            relay = self._relays.get(d.name)
            if relay is not None:
                # Stopping leaves the relay de-energised: a strike locks, a maglock
                # releases, which is what "fail secure" / "fail safe" mean (R14). Drive it
                # off explicitly: close() alone only turns the pin back into an input.
                try:
                    relay.off()
                finally:
                    relay.close()
        for b in [*self._contacts.values(), *self._exits.values(), self._tamper]:
            if b is not None:
                b.close()


class GpioCabinets(CabinetSensors):
    """Reed switches on cabinets, archives and rack doors; every one counts (R6, R7)."""

    def __init__(
        self,
        cabinets: Mapping[str, CabinetConfig],
        gpio: GpioConfig,
        *,
        pin_factory: Factory | None = None,
        clock: Clock | None = None,
        name: str = "cabinets",
    ) -> None:
        super().__init__(name)
        self._cfg = dict(cabinets)
        self._clock = clock or SystemClock()
        self._reeds: dict[str, DigitalInputDevice] = {}
        self._locks: dict[str, OutputDevice] = {}
        try:
            for c in self._cfg.values():
                self._reeds[c.name] = _button(c.pin, gpio, pin_factory, f"cabinets.{c.name}.pin")
                if c.lock_pin is not None:
                    try:  # created holding the lock: a starting daemon releases nothing
                        self._locks[c.name] = OutputDevice(
                            c.lock_pin,
                            active_high=c.lock_active_high,
                            initial_value=False,
                            pin_factory=pin_factory,
                        )
                    except (GPIOZeroError, OSError, RuntimeError) as e:
                        raise DriverInitError(
                            f"cabinets.{c.name}.lock_pin (GPIO {c.lock_pin}): {e}"
                        ) from None
        except DriverInitError:
            self._close()
            raise

    def _start(self) -> None:
        for name, b in self._reeds.items():
            b.when_activated = lambda _b, n=name: self._changed(n)
            b.when_deactivated = lambda _b, n=name: self._changed(n)

    def _changed(self, cabinet: str) -> None:
        self._emit(
            CabinetChanged(
                cabinet=cabinet, locked=self.locked(cabinet), mono_ns=self._clock.mono_ns()
            )
        )

    def locked(self, cabinet: str) -> bool:
        pressed = self._reeds[cabinet].is_active
        return pressed if self._cfg[cabinet].locked_when == "switch_closed" else not pressed

    def read_all(self) -> dict[str, bool]:
        return {name: self.locked(name) for name in self._reeds}

    def set_released(self, cabinet: str, released: bool) -> None:
        lock = self._locks.get(cabinet)
        if lock is None:
            raise DriverInitError(f"cabinets.{cabinet}: no electric lock (lock_pin)")
        lock.value = released

    def released(self) -> dict[str, bool]:
        return {name: bool(lock.value) for name, lock in self._locks.items()}

    def _close(self) -> None:
        for lock in self._locks.values():  # relays drop first: the locks hold
            lock.close()
        for b in self._reeds.values():
            b.close()


class GpioPresence(PresenceSensors):
    """Each area's PIR, through gpiozero's ``MotionSensor``, wired as alarm PIRs are: the
    normally-closed alarm contact to ground, opening on motion. A cut wire opens the loop
    too, so it reads as motion, never as an empty room (R23)."""

    def __init__(
        self,
        areas: Mapping[str, AreaConfig],
        gpio: GpioConfig,
        *,
        pin_factory: Factory | None = None,
        clock: Clock | None = None,
        name: str = "presence",
    ) -> None:
        super().__init__(name)
        self._clock = clock or SystemClock()
        self._pirs: dict[str, MotionSensor] = {}
        try:
            for a in areas.values():
                if a.presence_pin is None:
                    continue
                try:
                    # queue_len=1: every sample counts (the contact is a relay, not noisy).
                    self._pirs[a.name] = MotionSensor(
                        a.presence_pin, pull_up=gpio.pull_up, queue_len=1, pin_factory=pin_factory
                    )
                except (GPIOZeroError, OSError, RuntimeError) as e:
                    raise DriverInitError(
                        f"areas.{a.name}.presence_pin (GPIO {a.presence_pin}): {e}"
                    ) from None
        except DriverInitError:
            self._close()
            raise

    def _start(self) -> None:
        for area, pir in self._pirs.items():
            # Active is the closed contact: nobody there.
            pir.when_activated = lambda _p, a=area: self._changed(a)
            pir.when_deactivated = lambda _p, a=area: self._changed(a)

    def _changed(self, area: str) -> None:
        self._emit(Presence(area=area, motion=self._moving(area), mono_ns=self._clock.mono_ns()))

    def _moving(self, area: str) -> bool:
        # The pin as it is now (the sensor's smoothing queue fills in its own thread):
        # with the pull-up, a closed contact reads low.
        pir = self._pirs[area]
        return bool(pir.pin.state) == bool(pir.pull_up)

    def moving(self) -> dict[str, bool]:
        return {area: self._moving(area) for area in self._pirs}

    def wait_reading(self, area: str, moving: bool, timeout: float = 2.0) -> bool:
        """Until the sensor's own sampling shows ``moving`` (a simulated wire changes at
        once; the sensor sees it at its next sample)."""
        pir = self._pirs[area]
        return bool(pir.wait_for_inactive(timeout) if moving else pir.wait_for_active(timeout))

    def _close(self) -> None:
        for pir in self._pirs.values():
            pir.close()


class GpioIndicators(Indicators):
    """Buzzer and the green/red LEDs; absent ones are accepted and ignored."""

    NAMES = ("buzzer", "green", "red")

    def __init__(
        self,
        cfg: IndicatorConfig,
        *,
        pin_factory: Factory | None = None,
        name: str = "indicators",
    ) -> None:
        super().__init__(name)
        self._out: dict[str, DigitalOutputDevice] = {}
        self._mode = dict.fromkeys(self.NAMES, "off")
        pins = {"buzzer": cfg.buzzer_pin, "green": cfg.green_pin, "red": cfg.red_pin}
        for what, pin in pins.items():
            if pin is None:
                continue
            try:
                self._out[what] = DigitalOutputDevice(
                    pin, initial_value=False, pin_factory=pin_factory
                )
            except (GPIOZeroError, OSError, RuntimeError) as e:
                self._close()
                raise DriverInitError(f"indicators.{what}_pin (GPIO {pin}): {e}") from None

    def _start(self) -> None:
        pass  # outputs only

    def set(self, name: str, on: bool, blink: bool = False) -> None:
        if name not in self.NAMES:
            raise DriverOperationError(f"{self.name}: no indicator {name!r}")
        mode = "blink" if on and blink else ("on" if on else "off")
        if mode == self._mode[name]:
            return  # restarting a blink would reset its phase
        self._mode[name] = mode
        dev = self._out.get(name)
        if dev is None:
            return
        if mode == "blink":
            dev.blink(on_time=0.2, off_time=0.3)  # gpiozero's own background thread
        else:
            dev.value = mode == "on"

    def states(self) -> dict[str, str]:
        return {n: self._mode[n] if n in self._out else "off" for n in self.NAMES}

    def _close(self) -> None:
        for dev in self._out.values():
            dev.close()
