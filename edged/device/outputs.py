"""What the core decided, done to the hardware once its records are committed
(Invariant 2: record first, then act). An unlock, a cabinet release or a PIN change whose
record could not be written does not happen; a failing actuator is logged and the others
still act."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edged.core.actions import Action, Indicate, SetCabinetLock, SetLock, StorePin
from edged.device.acl import save_local_pin
from edged.device.hardware import CabinetSensors, DoorIO, Indicators
from edged.errors import EdgedError
from edged.log import get_logger
from edged.protocol.records import ENVELOPE_FIELDS

log = get_logger("daemon")
_ENVELOPE = ENVELOPE_FIELDS - {"hash", "sig"}


class Outputs:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.doors: DoorIO | None = None
        self.cabinets: CabinetSensors | None = None
        self.indicators: Indicators | None = None

    def act(self, actions: list[Action], committed: bool) -> None:
        for a in actions:
            try:
                self._act(a, committed)
            except EdgedError as e:
                log.error("actuator_failed", action=repr(a), error=str(e))

    def _act(self, a: Action, committed: bool) -> None:
        if isinstance(a, SetLock) and self.doors is not None:
            if a.unlocked and a.needs_record and not committed:
                log.error("unlock_refused_not_recorded", door=a.door)
                return
            self.doors.set_unlocked(a.door, a.unlocked)
        elif isinstance(a, SetCabinetLock) and self.cabinets is not None:
            if a.unlocked and a.needs_record and not committed:
                log.error("release_refused_not_recorded", cabinet=a.cabinet)
                return
            self.cabinets.set_released(a.cabinet, a.unlocked)
        elif isinstance(a, StorePin):
            if not committed:  # not recorded: not changed (the core reverted it)
                return
            try:
                save_local_pin(self.state_dir, a.person, a.hash, a.set_on, a.expires)
            except OSError as e:  # in force until a restart; said loudly
                log.error("pin_store_failed", person=a.person, error=str(e))
        elif isinstance(a, Indicate) and self.indicators is not None:
            self.indicators.set(a.name, a.on, a.blink)


def log_written(done: list[Any]) -> list[dict[str, Any]]:
    """Each committed record in the log (alarms as warnings); their fields."""
    written: list[dict[str, Any]] = []
    for rec in done:
        written.append(rec.fields)
        level = log.warning if rec.type.startswith("alarm.") else log.info
        fields = {k: v for k, v in rec.fields.items() if k not in _ENVELOPE}
        level("record", seq=rec.seq, type=rec.type, **fields)
    return written
