"""The example configuration and access list shipped with edged (``config/`` in the
repository, ``edged.examples`` when installed), and the example list moved to a given day.

An access list holds absolute dates, as it must: a right that ends "in 90 days from
whenever the file is read" would never end (R5). The example's dates are therefore written
as of one day, named in its header (``as of YYYY-MM-DD``), and :func:`example_acl` moves
every date in it by the days from then to the day asked for. Its story (one right ending
within the warning period, one ended, the rest in force) then holds on any day of any year,
which is what the demo, the README's walk and the tests need.
"""

from __future__ import annotations

import datetime as dt
import re
from importlib import resources
from pathlib import Path

from edged.errors import ConfigError

ACL_EXAMPLE = "acl-example.toml"
CONFIG_EXAMPLE = "edged.toml"

_AS_OF = re.compile(r"\bas of (\d{4}-\d{2}-\d{2})\b")
# A date in TOML or in a comment, not part of a longer run of digits (a timestamp's
# date part moves too: its time stays).
_DATE = re.compile(r"(?<![\d-])(\d{4})-(\d{2})-(\d{2})(?![\d-])")


def example_file(name: str) -> Path:
    """A file of the installed examples (``edged.toml``, ``acl-example.toml``)."""
    return Path(str(resources.files("edged.examples").joinpath(name)))


def example_config() -> Path:
    """The example configuration shipped in the package."""
    return example_file(CONFIG_EXAMPLE)


def move_dates(text: str, today: dt.date, *, source: str = ACL_EXAMPLE) -> str:
    """``text`` with every date moved by the days from its ``as of`` date to ``today``.

    Whole days keep every interval as written (a right of 364 days stays 364 days, across
    29 February too); the ``as of`` line itself becomes ``today``, so the result can be
    moved again."""
    m = _AS_OF.search(text)
    if m is None:
        raise ConfigError(f"{source}: no 'as of YYYY-MM-DD' line names the day its dates are for")
    try:
        delta = today - dt.date.fromisoformat(m.group(1))
    except ValueError as e:
        raise ConfigError(f"{source}: as of {m.group(1)}: {e}") from None

    def moved(d: re.Match[str]) -> str:
        try:
            day = dt.date(int(d.group(1)), int(d.group(2)), int(d.group(3)))
        except ValueError as e:
            raise ConfigError(f"{source}: {d.group(0)}: {e}") from None
        try:
            return (day + delta).isoformat()
        except OverflowError:
            raise ConfigError(f"{source}: {d.group(0)} moved to {today}: out of range") from None

    return _DATE.sub(moved, text)


def example_acl(today: dt.date, extra: str = "") -> str:
    """The example access list (and ``extra`` people written as of the same day), its
    dates moved to ``today``."""
    text = example_file(ACL_EXAMPLE).read_text(encoding="utf-8")
    return move_dates(text + extra, today)
