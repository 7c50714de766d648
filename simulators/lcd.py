"""A character LCD that keeps what it shows: the cells as the ROM's bytes, read back as
text (``edged sim lcd`` prints it; the demo shows it after each step)."""

from __future__ import annotations

from edged.drivers.hd44780 import decode

from edged.device.hardware import Display


class SimDisplay(Display):
    def __init__(self, *, name: str, cols: int = 16, rows: int = 2, **_: object) -> None:
        super().__init__(name, cols=cols, rows=rows)
        self.cells: list[bytes] = [b" " * cols] * rows

    def _write(self, cells: list[bytes]) -> None:
        self.cells = list(cells)

    def text(self) -> list[str]:
        """Each row as the screen shows it (half-width katakana included)."""
        return [decode(row) for row in self.cells]
