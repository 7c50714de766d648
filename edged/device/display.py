"""What a door's character display says (R1, R6): the question the keypad asks and what
to press, the answer to a card (let in, or why not, in words), and for the last one out
each open cabinet by name. Japanese in the katakana an HD44780's ROM has, or English.

The presenter reads what the core did (the records of a step, the open prompts); it
decides nothing. A result stays on the screen for a few seconds, then the screen goes
back to the question still open or to the resting text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RESULT_SECONDS = 4.0
NS = 1_000_000_000

# Each text: (Japanese in katakana, English). {x} are filled in.
TEXTS: dict[str, tuple[str, str]] = {
    "idle": ("カードヲ タッチ", "Tap your card"),
    "pin": ("アンショウバンゴウ", "Enter PIN"),
    "pin_new": ("アタラシイ バンゴウ", "New PIN"),
    "pin_repeat": ("モウイチド", "New PIN again"),
    "purpose": ("ニュウシツリユウ", "Purpose"),
    "carry_in": ("モチコミ 0ナシ1PC2バイタイ", "Carry-in 0/1PC/2"),
    "carry_out": ("モチダシ 0ナシ1PC2バイタイ", "Carry-out 0/1PC/2"),
    "carry_out_approval": ("ショウニンシャノ カード", "Approver's card"),
    "admin": ("#ツヅケル 0#リセット", "# go on 0# reset"),
    "lockcheck": ("セジョウカクニン", "Cabinets locked?"),
    "press": ("{keys} #", "{keys} then #"),
    "granted": ("ドウゾ {id}", "Welcome {id}"),
    "exit": ("オツカレサマデシタ", "Goodbye"),
    "denied": ("ニュウシツ デキマセン", "Access denied"),
    "lockcheck_open": ("アイテイマス:", "Still open:"),
    "lockcheck_ok": ("セジョウ カクニンズミ", "Lock check done"),
    "pin_warn": ("PIN アト{days}ニチ", "PIN ends in {days}d"),
    "pin_changed": ("バンゴウ ヘンコウズミ", "PIN changed"),
    "wait_escort": ("タチアイニンヲ マッテイマス", "Waiting for escort"),
    "carry_out_ok": ("モチダシ ショウニンズミ", "Carry-out approved"),
    # After an exit by the button: the last one out taps, so the lock check still happens.
    "open_reminder": ("ショコガ アイテイマス", "Cabinet open:"),
    "last_out": ("サイゴノカタハ カード", "Last out? Tap"),
    "last_out_2": ("ショコ セジョウカクニン", "card to check"),
    # An area's standing alarms, on its doors' screens until they are cleared.
    "not_closed": ("ヘイシツ ミカクニン", "Area not closed"),
    "not_closed_2": ("サイゴノカタハ カクニン", "Last out: check"),
    "presence": ("ヘイシツゴニ ヒトノケハイ", "Motion after close"),
    "presence_2": ("カクニンシテクダサイ", "Please check"),
}
# Why a card was refused, in words the holder understands.
REASONS: dict[str, tuple[str, str]] = {
    "unknown_card": ("トウロク ナシ", "Unknown card"),
    "expired": ("キゲンギレ", "Rights expired"),
    "not_yet_valid": ("キカンマエ", "Not yet valid"),
    "area_not_allowed": ("ケンゲン ナシ", "Not allowed here"),
    "outside_window": ("ジカンガイ", "Outside hours"),
    "holiday": ("キュウギョウビ", "Closed today"),
    "already_inside": ("ニュウシツチュウ", "Already inside"),
    "pin_wrong": ("バンゴウ チガイ", "Wrong PIN"),
    "pin_locked_out": ("ロックチュウ", "Card locked"),
    "pin_expired": ("バンゴウ キゲンギレ", "PIN expired"),
    "pin_change_failed": ("ヘンコウ デキマセン", "PIN not changed"),
    "pin_not_enrolled": ("バンゴウ ミトウロク", "No PIN enrolled"),
    "escort_needed": ("タチアイニン ナシ", "Escort needed"),
    "clock_untrusted": ("ジコク ミドウキ", "Clock not set"),
    "prompt_timeout": ("ジカンギレ", "Timed out"),
    "prompt_cancelled": ("チュウダン", "Cancelled"),
    "purpose_invalid": ("リユウ チガイ", "Bad purpose"),
    "carry_in_invalid": ("モチコミ チガイ", "Bad carry-in"),
    "not_custodian": ("カンリシャ デハアリマセン", "Not custodian"),
    "card_auth_failed": ("カード ニンショウ シッパイ", "Card not genuine"),
    "card_kind_not_allowed": ("コノカードハ ツカエマセン", "Card type refused"),
    "not_inside": ("ニュウシツ キロクナシ", "Not inside"),
    "no_access_list": ("ケンゲンヒョウ ナシ", "No access list"),
}


@dataclass
class Screen:
    """The lines a display shows, and until when a result stays (mono ns; 0: no result)."""

    lines: list[str]
    result_until: int = 0


class Presenter:
    """The text of each door's display. ``language``: "ja" (katakana) or "en"."""

    def __init__(self, doors: dict[str, str], areas: dict[str, Any], language: str = "ja") -> None:
        self.lang = 0 if language == "ja" else 1
        self.doors = doors  # display name -> door
        self.areas = areas  # door -> AreaConfig (purposes)
        self.screens = {d: Screen([self._t("idle")]) for d in doors}

    def _t(self, key: str, **kw: Any) -> str:
        return TEXTS[key][self.lang].format(**kw)

    def _reason(self, code: str) -> str:
        return REASONS.get(code, (code, code))[self.lang]

    def step(
        self, records: list[dict[str, Any]], snapshot: dict[str, Any], now: int
    ) -> dict[str, list[str]]:
        """After a step of the core (its records, then its state): every screen. A
        result stays ``RESULT_SECONDS``; then the open question, or the resting text."""
        prompts = snapshot.get("prompts", {})
        waiting = set(snapshot.get("waiting_visitors", []))
        offers = snapshot.get("last_out_offers", {})
        standing = self._standing(snapshot)
        out = {}
        for name, door in self.doors.items():
            result = self._result(door, [r for r in records if r.get("door") == door])
            if result is not None:
                self.screens[name] = Screen(result, now + int(RESULT_SECONDS * NS))
            elif not (self.screens[name].result_until and now < self.screens[name].result_until):
                lines = self._resting(door, prompts.get(door))
                if door in waiting and door not in prompts:
                    lines = [self._t("wait_escort")]
                elif door in offers and door not in prompts:
                    lines = [self._t("last_out"), self._t("last_out_2")]
                elif door in standing and door not in prompts:
                    lines = standing[door]
                self.screens[name] = Screen(lines)
            out[name] = self.screens[name].lines
        return out

    def _standing(self, snapshot: dict[str, Any]) -> dict[str, list[str]]:
        """Doors whose area has an alarm that stands until someone acts (R6, R7): not
        closed at closing time, or motion after closing with nobody inside."""
        not_closed = snapshot.get("not_closed", {})
        presence = set(snapshot.get("presence_alarm", []))
        out = {}
        for door, area in self.areas.items():
            name = area.name if area is not None else ""
            if name in presence:
                out[door] = [self._t("presence"), self._t("presence_2")]
            elif name in not_closed:
                out[door] = [self._t("not_closed"), self._t("not_closed_2")]
        return out

    def next_deadline(self) -> int | None:
        times = [s.result_until for s in self.screens.values() if s.result_until]
        return min(times) if times else None

    def _resting(self, door: str, prompt: dict[str, Any] | None) -> list[str]:
        if prompt is None:
            return [self._t("idle")]
        step = prompt["step"]
        keys = self._keys(door, step)
        return [self._t(step) if step in TEXTS else step, self._t("press", keys=keys)]

    def _keys(self, door: str, step: str) -> str:
        if step == "purpose":
            area = self.areas.get(door)
            codes = sorted(area.purposes) if area is not None else []
            return "/".join(codes) or "?"
        if step in ("carry_in", "carry_out"):
            return "0/1/2"
        if step in ("pin", "pin_new", "pin_repeat"):
            return "****"
        return ""

    def _result(self, door: str, records: list[dict[str, Any]]) -> list[str] | None:
        """The answer shown for this step's records at ``door``, if any."""
        by_type = {r["type"]: r for r in records}
        if "cabinet.open_reminder" in by_type:
            return [self._t("open_reminder"), str(by_type["cabinet.open_reminder"]["cabinet"])]
        if "lockcheck.open" in by_type:
            return [self._t("lockcheck_open"), " ".join(by_type["lockcheck.open"]["open"])]
        if "door.denied" in by_type:
            return [self._t("denied"), self._reason(str(by_type["door.denied"].get("reason")))]
        if "door.granted" in by_type:
            g = [r for r in records if r["type"] == "door.granted"][-1]
            second = ""
            if "pin_expires_in_days" in g:
                second = self._t("pin_warn", days=g["pin_expires_in_days"])
            elif "pin.changed" in by_type:
                second = self._t("pin_changed")
            return [self._t("granted", id=g.get("person", "")), second]
        if "lockcheck.confirmed" in by_type:
            return [self._t("lockcheck_ok"), self._t("exit")]
        if "carry_out.approved" in by_type:
            return [self._t("carry_out_ok"), self._t("exit")]
        if "door.exit" in by_type:
            return [self._t("exit")]
        return None


class DoorDisplays:
    """The displays of an installation and what each shows; one language each."""

    def __init__(self, displays: dict[str, Any], cfg: Any) -> None:
        self.devices = displays  # door -> Display device
        self.presenters = {
            door: Presenter(
                {door: door},
                {door: cfg.areas.get(cfg.doors[door].area)},
                cfg.displays[door].language,
            )
            for door in displays
        }

    def update(self, records: list[dict[str, Any]], snapshot: dict[str, Any], now: int) -> None:
        for door, p in self.presenters.items():
            for lines in p.step(records, snapshot, now).values():
                self.devices[door].show(lines)

    def next_deadline(self) -> int | None:
        times = [t for p in self.presenters.values() if (t := p.next_deadline()) is not None]
        return min(times) if times else None

    def text(self) -> dict[str, list[str]]:
        """What each screen shows now (for ``edged sim lcd`` and the demo)."""
        return {
            door: dev.text() if hasattr(dev, "text") else list(dev.lines)
            for door, dev in self.devices.items()
        }
