"""Text for an HD44780 character LCD with the common Japanese ROM (A00): ASCII, and
half-width katakana at 0xA1-0xDF (JIS X 0201), voicing marks as characters of their own.

Kana in either script (ガ, が) become the ROM's bytes (ｶ + ﾞ); what the ROM cannot show
(kanji, emoji) becomes "?", so a name never garbles the screen. Pure: the real display
(:mod:`edged.drivers.lcd`) and the simulated one share it.
"""

from __future__ import annotations

import unicodedata

# Full-width katakana and punctuation -> ROM byte, built from the half-width block itself
# (each half-width form's compatibility decomposition is its full-width one).
_KANA: dict[str, int] = {
    unicodedata.normalize("NFKC", chr(cp)): cp - 0xFEC0 for cp in range(0xFF61, 0xFFA0)
}
_DAKUTEN, _HANDAKUTEN = 0xDE, 0xDF  # ﾞ ﾟ
_BYTE_TO_TEXT = {b: chr(b + 0xFEC0) for b in range(0xA1, 0xE0)}


def _to_katakana(ch: str) -> str:
    cp = ord(ch)
    return chr(cp + 0x60) if 0x3041 <= cp <= 0x3096 else ch  # hiragana -> katakana


def encode(text: str) -> bytes:
    """``text`` as the A00 ROM's bytes: one per cell, voicing marks taking a cell."""
    out = bytearray()
    for ch in unicodedata.normalize("NFKC", text):  # full-width ASCII -> ASCII
        for part in unicodedata.normalize("NFD", _to_katakana(ch)):
            cp = ord(part)
            if part in _KANA:
                out.append(_KANA[part])
            elif cp == 0x3099:
                out.append(_DAKUTEN)
            elif cp == 0x309A:
                out.append(_HANDAKUTEN)
            elif 0x20 <= cp <= 0x7D and cp != 0x5C:  # 0x5C is ¥ in this ROM
                out.append(cp)
            elif unicodedata.combining(part):
                continue  # an accent the ROM has no cell for: the letter stays
            else:
                out.append(ord("?"))
    return bytes(out)


def decode(data: bytes) -> str:
    """What the screen shows for ``data`` (half-width katakana as Unicode has them)."""
    return "".join(_BYTE_TO_TEXT.get(b, chr(b) if 0x20 <= b <= 0x7D else "?") for b in data)


def fit(lines: list[str], cols: int, rows: int) -> list[bytes]:
    """``rows`` lines of exactly ``cols`` cells: encoded, cut, padded with spaces."""
    out = [encode(line)[:cols].ljust(cols, b" ") for line in lines[:rows]]
    return out + [b" " * cols] * (rows - len(out))
