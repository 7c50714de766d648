"""A character LCD (HD44780, 16x2 or 20x4) on an I2C backpack (PCF8574), through RPLCD
and smbus2: the common Raspberry Pi add-on. Text is encoded for the A00 ROM here
(:mod:`edged.drivers.hd44780`), so katakana show as the ROM has them."""

from __future__ import annotations

import contextlib
from typing import Any

from edged.drivers.hd44780 import fit

from edged.device.hardware import Display
from edged.errors import DriverInitError


class Hd44780Display(Display):
    """``address``: the backpack's I2C address (0x27 or 0x3F mostly); ``port``: the bus."""

    def __init__(
        self, *, name: str, address: int = 0x27, port: int = 1, cols: int = 16, rows: int = 2
    ) -> None:
        super().__init__(name, cols=cols, rows=rows)
        try:
            from RPLCD.i2c import CharLCD
        except ImportError as e:
            raise DriverInitError(
                f"displays.{name}: RPLCD and smbus2 are needed for an I2C LCD ({e});"
                " pip install RPLCD smbus2"
            ) from None
        try:
            self._lcd: Any = CharLCD(
                "PCF8574", address, port=port, cols=cols, rows=rows, charmap="A00",
                auto_linebreaks=False,
            )  # fmt: skip
        except (OSError, ValueError) as e:
            raise DriverInitError(
                f"displays.{name}: no LCD at I2C {port}:{address:#04x} ({e}); is I2C enabled"
                " (raspi-config) and the address right (i2cdetect -y 1)?"
            ) from None

    def _write(self, cells: list[bytes]) -> None:
        for row, data in enumerate(cells):
            self._lcd.cursor_pos = (row, 0)
            for b in data:
                self._lcd.write(b)  # raw ROM bytes: RPLCD's own charmap never sees them

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self._lcd.close(clear=True)


__all__ = ["Hd44780Display", "fit"]
