"""One contract, every backend that can run here (python-can style backend tests).

Every device: start once, close any number of times, no events after close, context
manager. Every keypad: keys arrive in order as KeypadKey events.
"""

from __future__ import annotations

from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from edged.drivers.gpio import GpioCabinets, GpioDoors, GpioIndicators
from edged.drivers.keypad import MatrixKeypad
from edged.drivers.pcsc import PcscCardReader
from edged.simulators.gpio import KeypadMatrix
from edged.simulators.keypad import SimKeypad
from gpiozero.pins.mock import MockFactory

from edged.core.events import KeypadKey
from edged.device.config import load_config
from edged.errors import DriverInitError
from edged.protocol.privacy import CardFingerprinter

pytestmark = pytest.mark.integration

CFG = load_config(Path(__file__).parents[2] / "config" / "edged.toml")
ROWS, COLS = (23, 24, 25, 8), (7, 12, 16)


def _matrix():
    f = MockFactory()
    matrix = KeypadMatrix(f, ROWS, COLS)
    return MatrixKeypad(ROWS, COLS, pin_factory=f), lambda keys: [matrix.press(k) for k in keys]


def _sim():
    kp = SimKeypad()
    return kp, kp.press


KEYPADS = {"matrix": _matrix, "sim": _sim}

DEVICES = {
    "doors": lambda: GpioDoors(CFG.doors, CFG.gpio, pin_factory=MockFactory()),
    "cabinets": lambda: GpioCabinets(CFG.cabinets, CFG.gpio, pin_factory=MockFactory()),
    "indicators": lambda: GpioIndicators(CFG.indicators, pin_factory=MockFactory()),
    "keypad-matrix": lambda: _matrix()[0],
    "keypad-sim": lambda: _sim()[0],
    "card-reader-pcsc": lambda: PcscCardReader(
        {"entry": "edged-sim entry"}, CardFingerprinter(b"c" * 32).fingerprint
    ),
}


@pytest.mark.parametrize("make", DEVICES.values(), ids=DEVICES.keys())
def test_device_lifecycle_contract(make, events):
    dev = make()
    with dev:
        dev.start(events)
        with pytest.raises(DriverInitError, match="already started"):
            dev.start(events)
    assert dev.closed
    dev.close()  # idempotent
    with pytest.raises(DriverInitError, match="closed"):
        dev.start(events)


@pytest.mark.parametrize("make", KEYPADS.values(), ids=KEYPADS.keys())
def test_keypad_contract(make, events):
    """R3: every keypad backend delivers the same keys in the same order."""
    kp, press = make()
    kp.start(events)
    press("1234#*0")
    assert "".join(e.key for e in events.of(KeypadKey)) == "1234#*0"
    kp.close()
    press("9")  # keys after close go nowhere
    assert "".join(e.key for e in events.of(KeypadKey)) == "1234#*0"


def test_sink_errors_are_logged_not_raised(log_lines):
    """Driver threads never die of a failing consumer; the failure goes to structlog."""
    kp = SimKeypad()

    def broken(_e):
        raise RuntimeError("consumer bug")

    kp.start(broken)
    kp.press("1")  # does not raise
    kp.close()
    failed = [x for x in log_lines() if x["event"] == "event_sink_failed"]
    assert failed and "consumer bug" in failed[0]["error"]
    assert failed[0]["event_type"] == "KeypadKey"


def test_mosquitto_fixture_is_a_real_broker(mosquitto):
    """The MQTT test harness: a real Mosquitto on a free loopback port."""
    import threading

    got = threading.Event()
    payloads = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda _c, _u, m: (payloads.append(m.payload), got.set())
    c.connect("127.0.0.1", mosquitto.port)
    c.subscribe("edged/test", qos=1)
    c.loop_start()
    try:
        c.publish("edged/test", b"hello", qos=1).wait_for_publish(5)
        assert got.wait(5) and payloads == [b"hello"]
    finally:
        c.loop_stop()
        c.disconnect()


def test_thread_errors_go_to_structlog_not_stderr(capfd, log_lines):
    import threading

    t = threading.Thread(target=lambda: 1 / 0, name="driver-x")
    t.start()
    t.join()
    rec = log_lines()[-1]
    assert rec["event"] == "thread_crashed" and rec["thread"] == "driver-x"
    assert "ZeroDivisionError" in rec["exception"]
    assert "Traceback" not in capfd.readouterr().err
