"""How the central side raises an alarm: stored, published, announced, and rate-limited.

Three kinds reach one topic, :data:`CENTRAL_ALARMS` (docs/mqtt.md): a device's own alarm
record (``source: device``, announced once the record is committed), what the collector
finds wrong in what it receives (``collector``: a bad record, a rewrite, a rollback), and
conditions the central side watches (``central``: a device silent, a sync stalled; raised
and cleared, see :mod:`edged.central.watch`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from edged.log import get_logger
from edged.protocol import topics
from edged.protocol.records import ENVELOPE_FIELDS, format_ts
from edged.words import fields_of_detail

log = get_logger("collector")

# The same alarm for the same device at most once a minute; the rest are counted and
# the count is written with the next one (nothing from the network writes unbounded rows).
ALARM_INTERVAL = 60.0
# One topic on which every alarm, a device's or the central side's, is announced again.
CENTRAL_ALARMS = f"{topics.PREFIX}/_central/alarms"

# ``publish(topic, payload, retain=False)``: the link's, QoS 1.
Publish = Callable[..., None]
# ``notify(ts, (site, device), type, fields)``: queue the alarm's notifications.
Notify = Callable[[str, tuple[str, str], str, dict[str, Any]], None]


def alarm_message(
    site: str, device: str, atype: str, detail: str, ts: Any, source: str, **more: Any
) -> bytes:
    """What the central alarm topic carries, for every kind of alarm (docs/mqtt.md)."""
    doc = {"site": site, "device": device, "type": atype, "ts": ts, "source": source}
    return json.dumps({**doc, "detail": detail, **more}).encode()


def alarm_detail(rec: dict[str, Any]) -> str:
    """A device alarm's own fields in a line (``door=main seconds=30``)."""
    parts = [
        f"{k}={rec[k]}"
        if isinstance(rec[k], str | int | float | bool)
        else f"{k}={','.join(map(str, rec[k])) or '-'}"
        for k in sorted(rec)
        if k not in ENVELOPE_FIELDS
        and (
            isinstance(rec[k], str | int | float | bool)
            or (isinstance(rec[k], list) and all(isinstance(x, str | int) for x in rec[k]))
        )
    ]
    return " ".join(parts)[:300]


class Alarms:
    """Alarms into the store (its ``alarms``: ``add``, ``raise_condition``, ``clear_condition``)
    and out to the broker. Called under the collector's lock: the store is one
    connection, and what is stored here commits with the caller's transaction."""

    def __init__(
        self,
        store: Any,
        publish: Publish,
        known: Callable[[str, str], bool],
        *,
        interval: float = ALARM_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
        notify: Notify | None = None,
    ) -> None:
        self.store, self._publish, self._known = store, publish, known
        # Each alarm stored is also queued for the people it must reach (edged.central.
        # notify), in the same transaction.
        self._notify = notify
        self._interval, self._now = interval, monotonic
        # (site, device, type) -> (last written, suppressed since)
        self._seen: dict[tuple[str, str, str], tuple[float, int]] = {}

    def found(self, site: str, device: str, atype: str, detail: str) -> None:
        """Something wrong in what a device sent: stored and announced, at most once a
        minute per (device, type), the rest counted into the next one. Names no device
        knows share one counter, so garbage under random topics cannot write unbounded
        rows."""
        if not self._known(site, device):
            site, device = "?", "?"
        key = (site, device, atype)
        now = self._now()
        last, suppressed = self._seen.get(key, (float("-inf"), 0))
        if now - last < self._interval:
            self._seen[key] = (last, suppressed + 1)
            return
        self._seen[key] = (now, 0)
        if suppressed:
            detail = f"{detail} (and {suppressed} more like it before this)"
        self._write(site, device, atype, detail)

    def flush_suppressed(self) -> None:
        """Counts of alarms held back, written once their minute is over."""
        now = self._now()
        for key, (last, suppressed) in list(self._seen.items()):
            if now - last >= self._interval:
                del self._seen[key]
                if suppressed:
                    site, device, atype = key
                    self._write(site, device, atype, f"{suppressed} more in the last minute")

    def of_record(self, dev: tuple[str, str], rec: dict[str, Any]) -> tuple[str, bytes]:
        """A device's alarm record being stored: its alarm row, and the announcement to
        send once the record is committed."""
        rtype, detail = str(rec.get("type")), alarm_detail(rec)
        self.store.alarms.add(
            str(rec.get("ts")), dev, rtype.removeprefix("alarm."), detail,
            source="device", seq=rec["seq"],
        )  # fmt: skip
        if self._notify is not None:
            self._notify(str(rec.get("ts")), dev, rtype, rec)
        return CENTRAL_ALARMS, alarm_message(
            *dev, rtype, detail, rec.get("ts"), "device", seq=rec["seq"]
        )

    def condition(self, dev: tuple[str, str], atype: str, active: bool, detail: str) -> None:
        """A watched condition now ``active`` or not: announced when it starts and when it
        clears, once each (the store keeps whether it is raised)."""
        ts = format_ts(int(time.time() * 1000))
        if active and self.store.alarms.raise_condition(ts, dev, atype, detail):
            log.warning("central_alarm", site=dev[0], device=dev[1], type=atype, detail=detail)
            if self._notify is not None:
                self._notify(ts, dev, atype, fields_of_detail(detail))
            self._announce(*dev, atype, detail, ts, "central")
        elif not active and self.store.alarms.clear_condition(ts, dev, atype):
            log.info("central_alarm_cleared", site=dev[0], device=dev[1], type=atype)
            self._announce(*dev, atype, "cleared", ts, "central", cleared=True)

    def _write(self, site: str, device: str, atype: str, detail: str) -> None:
        log.warning("collector_alarm", site=site, device=device, type=atype, detail=detail)
        ts = format_ts(int(time.time() * 1000))
        self.store.alarms.add(ts, (site, device), atype, detail)
        if self._notify is not None:
            self._notify(ts, (site, device), atype, fields_of_detail(detail))
        self._publish(
            topics.alarm(site, device, f"collector.{atype}"),
            json.dumps({"type": atype, "detail": detail}),
        )
        self._announce(site, device, atype, detail, ts, "collector")

    def _announce(
        self, site: str, device: str, atype: str, detail: str, ts: str, source: str, **more: Any
    ) -> None:
        self._publish(
            CENTRAL_ALARMS, alarm_message(site, device, atype, detail, ts, source, **more)
        )
