"""Configuration options declared once, on the dataclass field that holds them: the
default, the bounds or choices, whether it is a GPIO pin, and a line of help. The device's
config reader (:mod:`edged.device.config`) reads a TOML table by these declarations, and
the option reference (docs/config.md, ``edged config options``) is printed from them, so
a default, a bound and its documentation cannot drift apart (zigpy's schema is the
model). Pure data: the core owns its policy model, and this is how it is described.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """How an option is read: ``lo``..``hi`` for numbers, ``choices`` for names, ``pin``
    for a GPIO pin (BCM 0..27), ``file`` for a file that must exist ("file") or one
    holding a secret, which no other user may read ("secret")."""

    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    pin: bool = False
    file: str = ""


def opt(
    default: Any = MISSING,
    help: str = "",
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] = (),
    pin: bool = False,
    file: str = "",
) -> Any:
    """A dataclass field that is a configuration option (no default: required)."""
    assert file in ("", "file", "secret"), file
    meta = {"option": Option(help, lo, hi, tuple(choices), pin, file)}
    if default is MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Declared:
    """One declared option of a dataclass, with its resolved type."""

    name: str
    type: type  # int, float, bool or str (the part that is not None)
    optional: bool  # None is a value (absent: off)
    required: bool
    default: Any
    option: Option


def declared(cls: type) -> list[Declared]:
    """The declared options of dataclass ``cls``, in field order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        o = f.metadata.get("option")
        if o is None:
            continue
        t = hints[f.name]
        args = [a for a in typing.get_args(t) if a is not type(None)]
        base = args[0] if args else t
        out.append(
            Declared(f.name, base, len(args) < len(typing.get_args(t)), f.default is MISSING,
                     None if f.default is MISSING else f.default, o)
        )  # fmt: skip
    return out
