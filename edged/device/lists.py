"""The access list a door holds (R5): the stored one at start and on SIGHUP, a signed
envelope over MQTT, and what is refused. A part of the device runtime that returns what
to record; the daemon adopts a list in the core and records.

A stored list made for another card key, or unreadable, is ``alarm.acl_invalid`` and the
door denies everyone (fail secure). An envelope that does not open is refused within
bounds (:mod:`edged.device.refusals`): anyone on the broker can send them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edged.clock import Clock
from edged.core.actions import Action, Record
from edged.core.policy import AccessList
from edged.device.acl import load_active, save_active
from edged.device.config import Config
from edged.device.envelope import open_envelope
from edged.device.refusals import Refusals
from edged.errors import EdgedError
from edged.log import get_logger
from edged.protocol.keys import load_public_key
from edged.protocol.records import format_ts
from edged.protocol.signed import Rejected

log = get_logger("daemon")


@dataclass(frozen=True)
class Loaded:
    """A list to adopt (None: none usable) and what to record about it."""

    acl: AccessList | None
    records: list[Action] = field(default_factory=list)


class AccessLists:
    def __init__(self, cfg: Config, state_dir: Path, card_key: str, clock: Clock) -> None:
        self.cfg, self.state_dir, self.card_key, self.clock = cfg, state_dir, card_key, clock
        interval = cfg.sync.refusal_interval_seconds if cfg.sync else 60.0
        self.refusals = Refusals(interval)

    def stored(self) -> Loaded:
        """The stored list, checked against this device; None (deny all) if unusable."""
        try:
            acl = load_active(self.state_dir, set(self.cfg.areas))
        except EdgedError as e:
            return self._invalid(str(e))
        if acl is not None and acl.card_key != self.card_key:
            return self._invalid(
                f"access list was made for card key {acl.card_key}, this device's is"
                f" {self.card_key}"
            )
        return Loaded(acl)

    @staticmethod
    def _invalid(error: str) -> Loaded:
        log.error("acl_invalid", error=error)
        return Loaded(None, [Record("alarm.acl_invalid", {"error": error[:300]})])

    def envelope(self, payload: bytes, current: AccessList | None, mono: float) -> Loaded:
        """A signed list from the broker: stored and returned, or refused (recorded
        within bounds) and None; one already in force is neither."""
        assert self.cfg.sync is not None
        key = self.cfg.sync.admin_pubkey
        try:
            acl = open_envelope(
                payload,
                load_public_key(key) if key else None,
                site=self.cfg.site,
                device=self.cfg.device,
                now_ms=self.clock.wall_ms(),
                current=current,
                card_key=self.card_key,
                areas=set(self.cfg.areas),
            )
        except Rejected as e:
            if e.reason == "already_applied":
                log.info("acl_envelope_already_applied", detail=e.detail)
                return Loaded(None)
            return Loaded(None, self.refused(e.reason, e.detail, mono))
        save_active(self.state_dir, acl)  # atomic; the door keeps the old list until now
        return Loaded(acl)

    def refused(self, reason: str, detail: str, mono: float) -> list[Action]:
        """A refused list: the records to write now (none while an interval is open)."""
        records = self.refusals.refused(reason, detail, mono, format_ts(self.clock.wall_ms()))
        if not records:
            log.warning("acl_rejected", reason=reason, detail=detail[:200], recorded=False)
        return list(records)

    def refusals_due(self, mono: float) -> list[Action]:
        """At the end of an interval: how many were refused in it, by reason."""
        return list(self.refusals.due(mono, format_ts(self.clock.wall_ms())))
