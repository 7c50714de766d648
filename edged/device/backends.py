"""Every backend a device can be built from, in one registry: for each interface, the
names a config may use and where each one lives (``module:attribute``).

Nothing is imported until a backend is chosen, so a device without evdev, or a test
machine without GPIO libraries, still runs; the config's choices, ``edged doctor``, the
driver factories and the installations all read the names here (python-can's
``BACKENDS`` is the model).
"""

from __future__ import annotations

import importlib
from typing import Any

from edged.errors import DriverInitError

# interface -> backend name -> "module:attribute" ("" for gpiozero's own choice: on a Pi
# lgpio). The order is the order the config's error messages list them in.
BACKENDS: dict[str, dict[str, str]] = {
    "card_reader": {"pcsc": "edged.drivers.pcsc:PcscCardReader"},
    "keypad": {
        "matrix": "edged.drivers.keypad:MatrixKeypad",
        "evdev": "edged.drivers.evdev_keypad:EvdevKeypad",
        "sim": "edged.simulators.keypad:SimKeypad",
    },
    "display": {
        "hd44780": "edged.drivers.lcd:Hd44780Display",
        "sim": "edged.simulators.lcd:SimDisplay",
    },
    # gpiozero pin factories: [gpio] backend.
    "pin_factory": {
        "default": "",
        "lgpio": "gpiozero.pins.lgpio:LGPIOFactory",
        "rpigpio": "gpiozero.pins.rpigpio:RPiGPIOFactory",
        "native": "gpiozero.pins.native:NativeFactory",
        "mock": "gpiozero.pins.mock:MockFactory",
    },
    # What a simulated installation needs of the machine (doctor asks before starting).
    "preflight": {"sim": "edged.simulators.pcscd:missing_stack"},
    # What a daemon is built on: the Pi's devices, or the simulated rig.
    "installation": {
        "hardware": "edged.device.wiring:hardware_installation",
        "sim": "edged.simulators.rig:sim_installation",
    },
}


def names(interface: str) -> tuple[str, ...]:
    """The names a config may use for ``interface``, in registry order."""
    return tuple(BACKENDS.get(interface, {}))


def load(interface: str, name: str) -> Any:
    """What (interface, name) names, imported now, or None for "default"; a
    DriverInitError saying which names exist, or which package is missing."""
    target = BACKENDS.get(interface, {}).get(name)
    if target is None:
        raise DriverInitError(
            f"{interface}: unknown backend {name!r}; choose one of {sorted(names(interface))}"
        )
    if not target:
        return None
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise DriverInitError(
            f"{interface}: backend {name!r} cannot load: {e} (is its package installed?)"
        ) from None
