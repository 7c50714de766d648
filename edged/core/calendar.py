"""Closed days: national public holidays and the site's own closed days (R1, R5).

A time window such as ``mon-fri 07:00-22:00`` means working hours: on a closed day it
does not open the door, and the denial says ``holiday``. A window that must open on
closed days names them: ``mon-sun,hol 00:00-24:00`` or ``hol 09:00-17:00``.

National holidays come from the ``holidays`` package (computed, no I/O: substitute
holidays and 国民の休日 included), imported lazily so that a site without a country
calendar needs nothing more.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from edged.errors import ConfigError


@dataclass(frozen=True)
class CalendarConfig:
    """``country``: ISO 3166 code of the national holidays ("" for none); ``closed``: the
    site's own closed days (年末年始, 創立記念日…) and what they are called."""

    country: str = "JP"
    closed: dict[dt.date, str] = field(default_factory=dict)


class Calendar:
    """Which days are closed, and why."""

    def __init__(self, cfg: CalendarConfig) -> None:
        self.cfg = cfg
        self._national: Any = None
        if cfg.country:
            try:
                import holidays
            except ImportError:
                raise ConfigError(
                    "calendar.country: national holidays need the holidays package"
                    " (pip install edged[device])"
                ) from None
            try:
                self._national = holidays.country_holidays(cfg.country, language="ja")
            except (NotImplementedError, KeyError):
                raise ConfigError(
                    f"calendar.country: no holidays known for {cfg.country!r}"
                ) from None

    def closed(self, day: dt.date) -> str | None:
        """The name of the closed day, or None on a working day."""
        if day in self.cfg.closed:
            return self.cfg.closed[day]
        if self._national is not None:
            name = self._national.get(day)
            if name:
                return str(name)
        return None
