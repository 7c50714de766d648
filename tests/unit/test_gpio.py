"""GPIO drivers on gpiozero's MockFactory, pins as the wiring sees them (R6-R8, R14)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from edged.drivers.gpio import GpioCabinets, GpioDoors, GpioIndicators
from edged.drivers.keypad import MatrixKeypad
from edged.simulators.gpio import KeypadMatrix, SimGpio
from gpiozero.pins.mock import MockFactory

from edged.core.events import CabinetChanged, DoorContact, ExitButton, KeypadKey, Tamper
from edged.device.config import DoorConfig, GpioConfig, load_config
from edged.errors import DriverInitError, DriverOperationError

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).parents[2] / "config" / "edged.toml"


@pytest.fixture
def cfg():
    return load_config(EXAMPLE)


@pytest.fixture
def sim(cfg, events):
    s = SimGpio(cfg)
    for dev in (s.doors, s.cabinets, s.indicators, *s.keypads.values()):
        dev.start(events)
    yield s
    s.close()


def door(**kw) -> DoorConfig:
    base = DoorConfig(
        name="d",
        area="a",
        entry_reader="entry",
        exit_reader=None,
        relay_pin=17,
        relay_active_high=True,
        contact_pin=27,
        contact_closed_when="switch_closed",
        exit_button_pin=22,
        unlock_seconds=5,
        held_open_seconds=30,
        mode="fail_secure",
    )
    return replace(base, **kw)


def test_power_on_state_is_quiet_and_locked(sim, events):
    """R14: at start the relay is not energised, inputs read normal, nothing is reported."""
    st = sim.state()
    assert st["doors"]["main"] == {"relay_energised": False, "unlocked": False, "closed": True}
    assert st["cabinets"] == {"cab-a": True, "cab-b": True, "rack-back": True}
    assert st["tamper"] is False
    assert set(st["indicators"].values()) == {"off"}
    assert events.events == []


def test_inputs_become_events(sim, events):
    """R8: door contact, exit button, tamper and every cabinet reed become events."""
    sim.set_door("main", closed=False)
    sim.set_door("main", closed=True)
    sim.press_exit("main")
    sim.set_cabinet("rack-back", locked=False)
    sim.set_tamper(True)
    assert [type(e) for e in events.events] == [
        DoorContact,
        DoorContact,
        ExitButton,
        CabinetChanged,
        Tamper,
    ]
    assert [e.closed for e in events.of(DoorContact)] == [False, True]
    assert events.of(CabinetChanged)[0] == CabinetChanged(
        cabinet="rack-back", locked=False, mono_ns=events.of(CabinetChanged)[0].mono_ns
    )
    assert events.of(Tamper)[0].active is True
    assert sim.cabinets.read_all() == {"cab-a": True, "cab-b": True, "rack-back": False}


@pytest.mark.parametrize("active_high", [True, False])
def test_fail_secure_relay_polarity(active_high, events):
    """R14: a fail-secure strike is energised only to unlock, whatever the relay polarity."""
    f = MockFactory()
    d = door(relay_active_high=active_high)
    doors = GpioDoors({"d": d}, GpioConfig(), pin_factory=f)
    pin = f.pin(17)
    # Energised means the pin at its active level.
    assert pin.state == (not active_high)  # locked from the first instant
    # Once the pin is an output it never shows the energised level (states[0] is the
    # unconfigured mock pin; on a board, the relay input's own pull resistor holds it).
    assert all(st.state == (not active_high) for st in pin.states[1:])
    doors.set_unlocked("d", True)
    assert pin.state == active_high and doors.unlocked("d")
    doors.set_unlocked("d", False)
    assert pin.state == (not active_high)
    doors.close()
    doors.close()  # idempotent


def test_fail_safe_maglock_is_energised_to_lock(events):
    """R14: a fail-safe magnetic lock holds while energised and releases when stopped."""
    f = MockFactory()
    doors = GpioDoors({"d": door(mode="fail_safe")}, GpioConfig(), pin_factory=f)
    assert doors.relay_energised("d") and not doors.unlocked("d")
    doors.set_unlocked("d", True)
    assert not doors.relay_energised("d")
    doors.set_unlocked("d", False)
    doors.close()
    assert f.pin(17).state is False  # stopped: released


def test_cut_wires_read_as_alarm_states(cfg, events):
    """R8: a cut wire (open switch) reads as door open, cabinet unlocked, tamper active."""
    s = SimGpio(cfg)
    try:
        for p in (27, 6, 5):  # contact, cab-a reed, tamper: pulled up = open circuit
            s.factory.pin(p).drive_high()
        assert s.doors.door_closed("main") is False
        assert s.cabinets.read_all()["cab-a"] is False
        assert s.doors.tamper_active() is True
    finally:
        s.close()


def test_unknown_door_and_indicator_are_refused(sim):
    with pytest.raises(DriverOperationError):
        sim.doors.set_unlocked("nope", True)
    with pytest.raises(DriverOperationError):
        sim.indicators.set("blue", True)


def test_indicators_drive_pins(sim, cfg):
    sim.indicators.set("red", True)
    sim.indicators.set("buzzer", True)
    assert sim.factory.pin(cfg.indicators.red_pin).state is True
    assert sim.factory.pin(cfg.indicators.buzzer_pin).state is True
    assert sim.indicators.states() == {"buzzer": "on", "green": "off", "red": "on"}
    sim.indicators.set("red", True, blink=True)
    assert sim.indicators.states()["red"] == "blink"
    sim.indicators.set("red", False)
    assert sim.factory.pin(cfg.indicators.red_pin).state is False


def test_absent_indicators_are_ignored():
    from edged.device.config import IndicatorConfig

    ind = GpioIndicators(IndicatorConfig(), pin_factory=MockFactory())
    ind.set("buzzer", True)
    assert ind.states() == {"buzzer": "off", "green": "off", "red": "off"}


@pytest.mark.parametrize("ncols", [3, 4])
def test_matrix_keypad_every_key(ncols, events):
    """R3: every key of a 3x4 or 4x4 keypad arrives once, through real row/column scanning."""
    f = MockFactory()
    rows, cols = (23, 24, 25, 8), (7, 12, 16, 26)[:ncols]
    matrix = KeypadMatrix(f, rows, cols)
    kp = MatrixKeypad(rows, cols, pin_factory=f)
    kp.start(events)
    keys = "".join(matrix.layout)
    for k in keys:
        matrix.press(k)
    assert "".join(e.key for e in events.of(KeypadKey)) == keys
    # Idle again: all rows driven low, all columns released.
    assert all(f.pin(r).state is False for r in rows)
    assert all(f.pin(c).state is True for c in cols)
    kp.close()


def test_pin_in_use_is_a_clear_init_error():
    f = MockFactory()
    with pytest.raises(DriverInitError, match=r"doors\.d\.contact_pin \(GPIO 17\)"):
        GpioDoors({"d": door(contact_pin=17)}, GpioConfig(), pin_factory=f)
    # The relay created before the failure was released again.
    GpioDoors({"d": door()}, GpioConfig(), pin_factory=f).close()


def test_cabinet_locked_when_switch_open(events):
    from edged.device.config import CabinetConfig

    f = MockFactory()
    cab = GpioCabinets(
        {"c": CabinetConfig("c", "a", 6, "switch_open")}, GpioConfig(), pin_factory=f
    )
    cab.start(events)
    assert cab.read_all() == {"c": True}  # pulled up: switch open: locked
    f.pin(6).drive_low()
    assert cab.read_all() == {"c": False} and events.of(CabinetChanged)[0].locked is False
    cab.close()


def _inputs(cfg):
    """Every supervised input of the example config: (what, pin, reads-as-alarm check)."""
    out = []
    for name, d in cfg.doors.items():
        out.append(
            (f"door {name} contact", d.contact_pin, lambda s, n=name: not s.doors.door_closed(n))
        )
    for name, c in cfg.cabinets.items():
        out.append((f"cabinet {name} reed", c.pin, lambda s, n=name: not s.cabinets.read_all()[n]))
    out.append(("tamper loop", cfg.gpio.tamper_pin, lambda s: s.doors.tamper_active()))
    return out


@pytest.mark.parametrize("what", [w for w, _p, _c in _inputs(load_config(EXAMPLE))])
def test_a_cut_wire_on_each_input_reads_as_an_alarm_state(what, cfg, events):
    """R23: with the documented wiring (switch to GND, the Pi's pull-up), a cut wire on
    this input (named with its pin) reads as door open / cabinet unlocked / tamper, never
    as closed or locked."""
    [(label, pin, alarmed)] = [i for i in _inputs(cfg) if i[0] == what]
    s = SimGpio(cfg)
    try:
        assert not alarmed(s), f"{label} (pin {pin}) alarms at rest"
        s.factory.pin(pin).drive_high()  # the wire is cut: the pull-up wins
        assert alarmed(s), f"{label} (pin {pin}) reads a cut wire as closed/locked"
    finally:
        s.close()


def test_a_cut_exit_button_wire_opens_nothing(cfg, events):
    """R23, Invariant 4: the exit button's wire cut reads as 'not pressed' (the door stays
    locked; exit by card or the mechanical override). A short, which a digital input
    cannot tell from a press, releases the door once per closing, recorded as
    door.exit_request: docs/install.md says so and names supervised inputs as the fix."""
    s = SimGpio(cfg)
    try:
        s.doors.start(events)
        pin = cfg.doors["main"].exit_button_pin
        s.factory.pin(pin).drive_high()  # cut: the same level as at rest
        assert not [e for e in events.events if isinstance(e, ExitButton)]
        s.factory.pin(pin).drive_low()  # a short (or a press): one release, recorded
        s.factory.pin(pin).drive_high()
        s.factory.pin(pin).drive_high()
        assert len([e for e in events.events if isinstance(e, ExitButton)]) == 1
        text = (EXAMPLE.parent.parent / "docs" / "install.md").read_text()
        assert "short" in text and "end-of-line" in text
    finally:
        s.close()


def test_a_presence_sensor_reports_motion_and_its_cut_wire_reads_as_motion(cfg, events):
    """R23 (issue 37): an area's PIR (areas.NAME.presence_pin, gpiozero's MotionSensor) on
    its normally-closed alarm contact: still at rest, motion when the contact opens, and a
    cut wire (the pull-up wins) reads as motion, never as an empty room."""
    from edged.core.events import Presence

    area = replace(cfg.areas["handling"], presence_pin=11)
    cfg = replace(cfg, areas={**cfg.areas, "handling": area})
    s = SimGpio(cfg)
    try:
        s.presence.start(events)
        assert s.presence.moving() == {"handling": False}, "GPIO 11 reads motion at rest"
        s.set_motion("handling", True)
        e = events.wait_for(lambda e: isinstance(e, Presence) and e.motion)
        assert e.area == "handling" and s.state()["motion"] == {"handling": True}
        s.set_motion("handling", False)
        events.wait_for(lambda e: isinstance(e, Presence) and not e.motion)
        s.factory.pin(11).drive_high()  # the wire is cut
        assert s.presence.moving() == {"handling": True}, "GPIO 11: a cut wire reads as empty"
        with pytest.raises(ValueError, match="no presence sensor"):
            s.set_motion("server-room", True)
    finally:
        s.close()
