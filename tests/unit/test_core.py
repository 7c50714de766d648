"""The pure core with an injected clock: every decision and its reason (R1-R8)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.core import Core, Indicate, Record, SetLock
from edged.core.events import (
    CabinetChanged,
    CardPresented,
    DoorContact,
    ExitButton,
    KeypadKey,
)
from edged.core.policy import AccessList, Person
from edged.core.state import NS, Now
from edged.device.config import load_config
from edged.protocol.privacy import check_fields

pytestmark = pytest.mark.unit

CFG = load_config(Path(__file__).parents[2] / "config" / "edged.toml")
# Tuesday 2026-11-24 10:00 in Tokyo (01:00 UTC).
TUE_10 = int(dt.datetime(2026, 11, 24, 1, 0, tzinfo=dt.UTC).timestamp() * 1000)
SAT_10 = TUE_10 + 4 * 86_400_000


def person(
    pid,
    role="staff",
    areas=("handling", "server-room"),
    pin="1234",
    escort=False,
    windows=(),
    vf=dt.date(2026, 4, 1),
    vu=dt.date(2027, 3, 31),
):
    return Person(
        pid,
        f"Name {pid}",
        role,
        (f"fp1:{pid.lower():0>32}",),
        frozenset(areas),
        vf,
        vu,
        tuple(windows),
        escort,
        f"scrypt$test${pin}" if pin else None,
    )


PEOPLE = [
    person("S1", escort=True),
    person("S2", areas=("handling",), pin=None, windows=("mon-fri 09:00-18:00",)),
    person("V1", role="visitor", areas=("handling", "server-room"), pin=None),
    person("E1", vf=dt.date(2025, 10, 1), vu=dt.date(2026, 9, 30)),
    person("F1", vf=dt.date(2026, 12, 1), vu=dt.date(2027, 11, 30)),
    person("A1", role="admin", escort=True),
]
ACL = AccessList(3, "tokyo-hq", "k", {p.id: p for p in PEOPLE})
CARD = {p.id: p.cards[0] for p in PEOPLE}


def fake_pin(pin: str, stored: str) -> bool:
    return stored == f"scrypt$test${pin}"


class Rig:
    """A core, a clock, and helpers that feed events and collect actions."""

    def __init__(self, cfg=CFG, acl=ACL, wall=TUE_10, synced=True, pin_hash=None):
        self.core = Core(cfg, acl, pin_check=fake_pin, pin_hash=pin_hash)
        self.mono = 10 * NS
        self.wall = wall
        self.synced = synced
        self.core.seed_cabinets({name: True for name in cfg.cabinets}, self.now)
        self.log: list = []

    @property
    def now(self):
        return Now(self.mono, self.wall, self.synced)

    def advance(self, seconds):
        self.mono += int(seconds * NS)
        self.wall += int(seconds * 1000)
        return self._logged(self.core.tick(self.now))

    def ev(self, e):
        return self._logged(self.core.handle(e, self.now) + self.core.tick(self.now))

    def _logged(self, out):
        # Every record the core makes is one the journal takes (no float, no secret):
        # a record the journal refuses is a decision that is not recorded.
        for r in records(out):
            check_fields(r.fields)
        self.log += out
        return out

    def tap(self, pid, reader="entry"):
        return self.ev(
            CardPresented(reader=reader, card=CARD.get(pid, "fp1:" + "ab" * 16), kind="felica")
        )

    def keys(self, keys, door="main"):
        out = []
        for k in keys:
            out += self.ev(KeypadKey(keypad=door, key=k))
        return out


def _step(rig, door="main"):
    """The step the dialogue open at ``door`` asks, as the door's status shows it."""
    return rig.core.snapshot()["prompts"][door]["step"]


def _inside(rig, area="handling"):
    return rig.core.snapshot()["occupancy"].get(area, [])


def records(actions, rtype=None):
    return [a for a in actions if isinstance(a, Record) and (rtype is None or a.type == rtype)]


def unlocks(actions):
    return [a for a in actions if isinstance(a, SetLock) and a.unlocked]


def only(actions, rtype):
    [r] = records(actions, rtype)
    return r.fields


def test_staff_entry_asks_purpose_and_carry_in_then_grants():
    """R1, R4: purpose (入室理由) and carry-in declaration are asked and recorded."""
    r = Rig()
    out = r.tap("S2")
    assert not records(out) and not unlocks(out)
    assert r.core.snapshot()["prompts"]["main"]["step"] == "purpose"
    assert r.keys("1#") == []
    out = r.keys("1#")
    g = only(out, "door.granted")
    assert g["person"] == "S2" and g["purpose"] == "payroll" and g["carry_in"] == "approved_pc"
    assert g["reason"] == "ok" and g["direction"] == "entry" and g["area"] == "handling"
    # Record first, then act: the grant precedes the unlock in the same step (Invariant 2).
    kinds = [type(a) for a in out]
    assert kinds.index(Record) < kinds.index(SetLock)
    assert unlocks(out)[0].needs_record is True
    assert r.core.snapshot()["occupancy"]["handling"] == ["S2"]


@pytest.mark.parametrize(
    "pid,reader,wall,synced,reason",
    [
        ("ZZ", "entry", TUE_10, True, "unknown_card"),
        ("E1", "entry", TUE_10, True, "expired"),
        ("F1", "entry", TUE_10, True, "not_yet_valid"),
        ("S2", "server-entry", TUE_10, True, "area_not_allowed"),
        ("S2", "entry", SAT_10, True, "outside_window"),
        ("S2", "entry", TUE_10, False, "clock_untrusted"),
    ],
)
def test_denials_carry_their_reason(pid, reader, wall, synced, reason):
    """R1, R5: every denial is recorded with its reason, and nothing unlocks."""
    r = Rig(wall=wall, synced=synced)
    out = r.tap(pid, reader)
    assert only(out, "door.denied")["reason"] == reason
    assert not unlocks(out)


def test_clock_policy_deny_all_and_trust():
    """Clock: before NTP sync, 'deny_all' refuses everyone; 'trust' uses the clock as is."""
    deny_all = replace(CFG, clock=replace(CFG.clock, when_unsynced="deny_all"))
    r = Rig(cfg=deny_all, synced=False)
    assert only(r.tap("S1"), "door.denied")["reason"] == "clock_untrusted"
    trust = replace(CFG, clock=replace(CFG.clock, when_unsynced="trust"))
    r = Rig(cfg=trust, synced=False)
    r.tap("S2")
    assert records(r.keys("1#0#"), "door.granted")


def test_no_access_list_denies_everything():
    r = Rig(acl=None)
    assert only(r.tap("S1"), "door.denied")["reason"] == "no_access_list"


def test_management_area_pin_and_lockout():
    """R3: the server room needs the PIN; 5 wrong PINs lock the card out, recorded."""
    r = Rig()
    r.tap("S1", "server-entry")
    assert r.core.snapshot()["prompts"]["server"]["step"] == "pin"
    for i in range(1, 6):
        if i > 1:
            r.tap("S1", "server-entry")
        out = r.keys("9999#", door="server")
        assert only(out, "door.denied")["attempt"] == i
    lock = only(out, "alarm.pin_lockout")
    assert lock["attempts"] == 5 and lock["minutes"] == 15
    assert only(r.tap("S1", "server-entry"), "door.denied")["reason"] == "pin_locked_out"
    r.advance(15 * 60 + 1)
    r.tap("S1", "server-entry")
    out = r.keys("1234#", door="server")
    assert only(out, "door.granted")["person"] == "S1"
    assert all("1234" not in str(a) and "9999" not in str(a) for a in r.log)  # R3: never recorded


def test_star_clears_and_prompt_times_out():
    r = Rig()
    r.tap("S1", "server-entry")
    r.keys("99*1234#", door="server")  # '*' cleared the wrong digits
    assert r.core.snapshot()["occupancy"]["server-room"] == ["S1"]
    r2 = Rig()
    r2.tap("S1", "server-entry")
    out = r2.advance(CFG.keypads["server"].timeout_seconds + 0.1)
    d = only(out, "door.denied")
    assert d["reason"] == "prompt_timeout" and d["step"] == "pin"


def test_visitor_needs_an_escort_tapping_after():
    """R2: a visitor opens the door only with an escort; both are in the record."""
    r = Rig()
    out = r.tap("V1")
    assert not records(out) and not unlocks(out)
    r.advance(10)
    r.tap("S1")  # the escort, within escort_seconds
    out = r.keys("1#0#")
    grants = records(out, "door.granted")
    assert [g.fields["person"] for g in grants] == ["S1", "V1"]
    assert grants[1].fields["escort"] == "S1" and grants[1].fields["reason"] == "escorted"
    assert grants[0].fields["escorting"] == "V1"
    assert sorted(r.core.snapshot()["occupancy"]["handling"]) == ["S1", "V1"]


def test_visitor_after_escort_and_visitor_alone():
    """R2: an escort's tap covers a visitor who follows; alone, the visitor is refused."""
    r = Rig()
    r.tap("S1")
    r.keys("1#0#")
    r.advance(5)
    r.tap("V1")
    out = r.keys("3#0#")
    v = only(out, "door.granted")
    assert v["person"] == "V1" and v["escort"] == "S1" and v["purpose"] == "audit"
    alone = Rig()
    alone.tap("V1")
    out = alone.advance(CFG.policy.escort_seconds + 1)
    assert only(out, "door.denied")["reason"] == "escort_needed"


def test_management_area_visitor_needs_escort_pin():
    """R2, R3: in the server room the escort's PIN authenticates the pair."""
    r = Rig()
    r.tap("V1", "server-entry")
    r.tap("S1", "server-entry")
    assert r.core.snapshot()["prompts"]["server"]["step"] == "pin"
    out = r.keys("1234#", door="server")
    assert [g.fields["person"] for g in records(out, "door.granted")] == ["S1", "V1"]


def test_anti_passback_and_exit():
    """R1: already inside cannot enter again; the exit tap records the exit time."""
    r = Rig()
    r.tap("S1")
    r.keys("1#0#")
    r.tap("S2")
    r.keys("1#0#")
    assert only(r.tap("S1"), "door.denied")["reason"] == "already_inside"
    out = r.tap("S2", "exit")
    e = only(out, "door.exit")
    assert e["person"] == "S2" and e["was_inside"] is True and e["direction"] == "exit"
    assert unlocks(out) and unlocks(out)[0].needs_record is False  # exit never waits


def test_exit_is_never_blocked():
    """Invariant 4: an unknown card, or one not counted inside, still opens from inside."""
    r = Rig()
    out = r.tap("ZZ", "exit")
    assert only(out, "door.exit")["reason"] == "unknown_card" and unlocks(out)
    out = r.ev(ExitButton(door="main"))
    assert only(out, "door.exit_request")["person"] is None and unlocks(out)


def enter(r, pid="S1"):
    r.tap(pid)
    r.keys("1#0#")


def test_last_leaver_finds_an_open_cabinet_then_confirms():
    """R6: the last leaver is shown the open cabinet, closes it, taps again, confirms."""
    r = Rig()
    enter(r)
    r.ev(CabinetChanged(cabinet="cab-b", locked=False))
    out = r.tap("S1", "exit")
    lo = only(out, "lockcheck.open")
    assert lo["open"] == ["cab-b"] and lo["cabinets"] == {"cab-a": "locked", "cab-b": "open"}
    assert not unlocks(out)
    assert Indicate("red", True, blink=True) in out and Indicate("buzzer", True, blink=True) in out
    r.ev(CabinetChanged(cabinet="cab-b", locked=True))
    out = r.tap("S1", "exit")
    assert not records(out) and r.core.snapshot()["prompts"]["main"]["step"] == "lockcheck"
    r.advance(3)
    out = r.keys("#")
    c = only(out, "lockcheck.confirmed")
    assert c["person"] == "S1" and c["name"] == "Name S1" and c["method"] == "key"
    assert c["cabinets"] == {"cab-a": "locked", "cab-b": "locked"}
    assert only(out, "door.exit")["last_leaver"] is True and unlocks(out)
    assert r.core.snapshot()["occupancy"]["handling"] == []


def test_last_leaver_who_does_not_confirm_raises_an_alarm():
    """R6: no confirmation in time -> lockcheck.missed alarm, and the door still opens."""
    r = Rig()
    enter(r)
    r.tap("S1", "exit")
    out = r.advance(CFG.policy.lockcheck_seconds + 1)
    m = only(out, "alarm.lockcheck_missed")
    assert m["person"] == "S1" and m["method"] == "timeout"
    assert unlocks(out)


def test_rack_back_door_counts_and_pin_confirmation():
    """R7: the rack's back door is a monitored lock; R6 with a PIN confirmation."""
    r = Rig()
    r.tap("S1", "server-entry")
    r.keys("1234#", door="server")
    r.ev(CabinetChanged(cabinet="rack-back", locked=False))
    assert only(r.tap("S1", "server-exit"), "lockcheck.open")["open"] == ["rack-back"]
    r.ev(CabinetChanged(cabinet="rack-back", locked=True))
    r.tap("S1", "server-exit")
    out = r.keys("0000#", door="server")
    assert records(out, "lockcheck.pin_wrong") and not unlocks(out)
    out = r.keys("1234#", door="server")
    assert only(out, "lockcheck.confirmed")["method"] == "pin"


def test_cabinet_opened_in_an_empty_area_is_an_alarm():
    """R6, R8: a cabinet opening while nobody is inside is an alarm."""
    r = Rig()
    out = r.ev(CabinetChanged(cabinet="cab-a", locked=False))
    assert only(out, "alarm.cabinet_unattended")["cabinet"] == "cab-a"
    enter(r)
    out = r.ev(CabinetChanged(cabinet="cab-b", locked=False))
    assert not records(out, "alarm.cabinet_unattended")


def test_admin_resets_occupancy():
    """R1, R21: an admin card can reset occupancy, and that use of admin rights is a
    record with who used them and who was removed; the same keys from a staff card are
    only an answer to the purpose question (no admin step exists for it)."""
    r = Rig()
    enter(r, "S2")
    r.tap("A1")
    out = r.keys("0#")
    reset = only(out, "occupancy.reset")
    assert reset["removed"] == ["S2"] and reset["by"] == "A1"
    assert r.core.snapshot()["occupancy"]["handling"] == [] and not unlocks(out)
    r = Rig()
    enter(r, "S2")
    r.tap("S1")
    out = r.keys("0#")
    assert not records(out, "occupancy.reset")
    assert only(out, "door.denied")["reason"] == "purpose_invalid"
    assert r.core.snapshot()["occupancy"]["handling"] == ["S2"]


def test_held_open_and_relock_timer():
    """R8: held open past its limit is an alarm until closed; the strike relocks on time."""
    r = Rig()
    enter(r)
    out = r.ev(DoorContact(door="main", closed=False))
    assert records(out, "door.opened")
    out = r.advance(CFG.doors["main"].held_open_seconds + 1)
    assert only(out, "alarm.door_held_open")["door"] == "main"
    assert [a for a in out if isinstance(a, SetLock)] == [SetLock("main", False)]
    out = r.ev(DoorContact(door="main", closed=True))
    assert only(out, "alarm.cleared")["was"] == "held_open"
    r2 = Rig()
    enter(r2)
    out = r2.advance(CFG.doors["main"].unlock_seconds + 0.01)
    assert SetLock("main", False) in out  # never opened: relocked after the unlock time
    assert only(r2.ev(DoorContact(door="main", closed=False)), "alarm.door_forced")


def test_expiry_warning_once_a_day():
    """R5: rights ending within 30 days are warned of, once a day."""
    soon = person("S9", vu=dt.date(2026, 12, 10), vf=dt.date(2026, 1, 1))
    r = Rig(acl=AccessList(1, "s", "k", {"S9": soon}))
    out = r.advance(1)
    assert only(out, "acl.expiring")["people"] == [{"id": "S9", "valid_until": "2026-12-10"}]
    assert not records(r.advance(3600), "acl.expiring")
    assert records(r.advance(86400), "acl.expiring")


# -- properties -----------------------------------------------------------------------
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("tap"),
            st.sampled_from(["S1", "S2", "V1", "E1", "A1", "ZZ"]),
            st.sampled_from(["entry", "exit", "server-entry", "server-exit"]),
        ),
        st.tuples(
            st.just("keys"),
            st.sampled_from(["1#", "0#", "#", "1234#", "9999#", "*"]),
            st.sampled_from(["main", "server"]),
        ),
        st.tuples(st.just("door"), st.sampled_from(["main", "server"]), st.booleans()),
        st.tuples(st.just("cab"), st.sampled_from(["cab-a", "cab-b", "rack-back"]), st.booleans()),
        st.tuples(st.just("exitbtn"), st.sampled_from(["main", "server"]), st.none()),
        st.tuples(st.just("wait"), st.sampled_from([0.5, 4, 16, 61, 1000]), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_core_invariants_hold_for_any_sequence(seq):
    """Invariants 2 and 4, R1, R3, R11 under any sequence of events and waits."""
    r = Rig()
    for kind, a, b in seq:
        if kind == "tap":
            out = r.tap(a, b)
        elif kind == "keys":
            out = r.keys(a, door=b)
        elif kind == "door":
            out = r.ev(DoorContact(door=a, closed=b))
        elif kind == "cab":
            out = r.ev(CabinetChanged(cabinet=a, locked=b))
        elif kind == "exitbtn":
            out = r.ev(ExitButton(door=a))
        else:
            out = r.advance(a)
        recs = records(out)
        for u in unlocks(out):
            if u.needs_record:
                # No unlock for a grant that is not a record of this very step.
                assert any(x.type == "door.granted" for x in recs)
        for rec in recs:
            if rec.type == "door.denied":
                assert rec.fields.get("reason")
            text = str(rec.fields)
            assert "1234" not in text and "9999" not in text  # no PIN digits, ever
        occ = r.core.snapshot()["occupancy"]
        for area, ids in occ.items():
            assert len(ids) == len(set(ids)) and set(ids) <= set(ACL.people)
            for pid in ids:
                assert area in ACL.people[pid].areas
        assert "E1" not in occ["handling"]  # expired never gets in


def replayable(actions, mono_ns, boot="boot-1", synced=True, ts="2026-11-24T01:00:00.000Z"):
    """Core records as the journal would give them back at start."""
    return [
        {
            **a.fields,
            "type": a.type,
            "mono_us": mono_ns // 1000,
            "boot_id": boot,
            "clock_synced": synced,
            "ts": ts,
        }
        for a in records(actions)
    ]


def test_wrong_pins_and_lockouts_survive_a_restart():
    """R3: replayed from the records, a restart keeps the count of wrong PINs and the
    lock-out's remaining time: on the same boot by the monotonic clock, after a power cut
    by the synchronised wall clock, and for its full length when time is unknown."""
    r = Rig()
    for _ in range(4):
        r.tap("S1", "server-entry")
        r.keys("9999#", door="server")
    again = Rig()
    again.core.restore(replayable(r.log, r.mono), again.now, "boot-1")
    again.tap("S1", "server-entry")
    out = again.keys("9999#", door="server")
    assert only(out, "door.denied")["attempt"] == 5 and records(out, "alarm.pin_lockout")
    locked = replayable(again.log, again.mono)
    # Same boot, 10 minutes later: 5 of the 15 minutes are left.
    same = Rig()
    same.mono = again.mono + 600 * NS
    same.core.restore(locked, same.now, "boot-1")
    assert only(same.tap("S1", "server-entry"), "door.denied")["reason"] == "pin_locked_out"
    same.advance(5 * 60 + 1)
    same.tap("S1", "server-entry")
    assert same.core.snapshot()["prompts"]["server"]["step"] == "pin"
    # Another boot (the monotonic clock restarted), wall clock synchronised: 14 min later.
    cut = Rig(wall=TUE_10 + 14 * 60_000)
    cut.mono = 1 * NS
    cut.core.restore(locked, cut.now, "boot-2")
    assert cut.core.next_deadline() == cut.mono + 60 * NS
    # Another boot and no trusted time: the full 15 minutes again (fail secure).
    blind = Rig(synced=False)
    blind.mono = 1 * NS
    blind.core.restore(locked, blind.now, "boot-2")
    assert blind.core.next_deadline() == blind.mono + 15 * 60 * NS


def test_escort_hands_over_or_raises_the_unescorted_alarm():
    """R2: an escort leaving their visitor inside hands them over to another escort who is
    inside, recorded; with nobody to take over, alarm.visitor_unescorted and the red LED
    until the visitor has left."""
    r = Rig()
    r.tap("V1")
    r.tap("S1")
    r.keys("1#0#")
    r.tap("A1")
    r.keys("#1#0#")  # the admin's menu first: '#' goes on to the entry
    assert sorted(r.core.snapshot()["occupancy"]["handling"]) == ["A1", "S1", "V1"]
    out = r.tap("S1", "exit")
    h = only(out, "visitor.escort_changed")
    assert (h["from"], h["to"], h["visitors"]) == ("S1", "A1", ["V1"])
    assert not records(out, "alarm.visitor_unescorted")
    out = r.tap("A1", "exit")
    a = only(out, "alarm.visitor_unescorted")
    assert a["escort"] == "A1" and a["visitors"] == ["V1"]
    assert Indicate("red", True) in out and r.core.alarm_active()
    out = r.tap("V1", "exit")
    missed = only(out, "alarm.lockcheck_missed")
    assert missed["method"] == "role_cannot_confirm"
    assert not r.core.alarm_active() and r.core.snapshot()["unescorted"] == {}


def admitted(actions) -> bool:
    """Not denied: let in, or on to the keypad's questions (the green LED blinks)."""
    return not records(actions, "door.denied") and any(
        isinstance(a, Indicate) and a.name == "green" and a.on for a in actions
    )


# Monday 2026-11-23 10:00 in Tokyo: 勤労感謝の日, a national holiday.
HOLIDAY_10 = TUE_10 - 86_400_000


def test_a_working_hours_window_stays_shut_on_a_public_holiday():
    """R1, R5: "mon-fri 09:00-18:00" on a national holiday is denied as `holiday`, naming
    the day; the same person is let in on the working day after; a window that names
    `hol` opens on closed days too."""
    rig = Rig(wall=HOLIDAY_10)
    out = rig.tap("S2")
    [d] = records(out, "door.denied")
    assert d.fields["reason"] == "holiday" and d.fields["closed_day"] == "勤労感謝の日"
    assert not unlocks(out)
    rig.wall = TUE_10
    assert admitted(rig.tap("S2"))  # on to the keypad's purpose question
    ok = replace(
        PEOPLE[1], id="S3", cards=("fp1:" + "3" * 32,), windows=("mon-fri,hol 09:00-18:00",)
    )
    acl = AccessList(4, "tokyo-hq", "k", {ok.id: ok})
    rig = Rig(acl=acl, wall=HOLIDAY_10)
    assert admitted(rig.ev(CardPresented(reader="entry", card=ok.cards[0], kind="felica")))
    # Outside the window's hours on a holiday is still outside_window, not holiday.
    rig = Rig(wall=HOLIDAY_10 + 10 * 3_600_000)  # 20:00
    [d] = records(rig.tap("S2"), "door.denied")
    assert d.fields["reason"] == "outside_window"


def test_the_sites_own_closed_days_and_a_site_without_national_holidays():
    """R5: a day the site closes (年末休業) shuts working-hours windows; a calendar with
    no country lets a holiday be an ordinary Monday."""
    from edged.core.calendar import CalendarConfig

    closed = replace(CFG, calendar=CalendarConfig("JP", {dt.date(2026, 11, 24): "年末休業"}))
    [d] = records(Rig(cfg=closed).tap("S2"), "door.denied")
    assert (d.fields["reason"], d.fields["closed_day"]) == ("holiday", "年末休業")
    open_ = replace(CFG, calendar=CalendarConfig("", {}))
    assert admitted(Rig(cfg=open_, wall=HOLIDAY_10).tap("S2"))
    # People without windows come in on any day.
    assert admitted(Rig(wall=HOLIDAY_10).tap("S1"))


def test_window_days_name_closed_days_only_on_their_own():
    """R5: `hol` stands alone among a window's days; a range through it is an error."""
    from edged.core.policy import HOL, parse_window

    days, start, end = parse_window("mon-fri,hol 09:00-18:00")
    assert days == frozenset({0, 1, 2, 3, 4, HOL}) and (start, end) == (540, 1080)
    for bad in ("sun-hol 09:00-18:00", "hol-mon 09:00-18:00", "holiday 09:00-18:00"):
        with pytest.raises(ValueError):
            parse_window(bad)


def _custodians_rig(cabinet_of=("A1",)):
    people = [replace(p, cabinets=frozenset({"rack-back"})) if p.id in cabinet_of else p
              for p in PEOPLE]  # fmt: skip
    return Rig(acl=AccessList(3, "tokyo-hq", "k", {p.id: p for p in people}))


def _into_server_room(rig, pid, pin="1234"):
    rig.tap(pid, reader="server-entry")
    first = "#" if pid.startswith("A") else ""  # an admin card's first step: # goes on
    assert records(rig.keys(first + pin + "#", door="server"), "door.granted")


def test_only_a_custodian_inside_releases_the_server_box(monkeypatch):
    """R17: the rack's electric lock is released only for its appointed custodian, and
    only while that custodian is inside the server room; the release is recorded before
    the lock moves and ends by itself; anyone else's card is refused with the reason."""
    from edged.core import SetCabinetLock

    rig = _custodians_rig()
    # A1, the custodian, is not inside yet: refused.
    [d] = records(rig.tap("A1", reader="rack"), "cabinet.denied")
    assert (d.fields["reason"], d.fields["person"]) == ("not_inside", "A1")
    _into_server_room(rig, "A1")
    _into_server_room(rig, "S1")
    # S1 is inside but is not the box's custodian.
    out = rig.tap("S1", reader="rack")
    assert records(out, "cabinet.denied")[0].fields["reason"] == "not_custodian"
    assert not [a for a in out if isinstance(a, SetCabinetLock)]
    out = rig.tap("A1", reader="rack")
    [g] = records(out, "cabinet.granted")
    assert g.fields["inside"] == ["A1", "S1"]
    release = [a for a in out if isinstance(a, SetCabinetLock)]
    assert release == [SetCabinetLock("rack-back", True)]
    assert out.index(g) < out.index(release[0])  # recorded first (Invariant 2)
    # Opened while released: who was inside is recorded, no alarm.
    out = rig.ev(CabinetChanged(cabinet="rack-back", locked=False))
    [u] = records(out, "cabinet.unlocked")
    assert u.fields["inside"] == ["A1", "S1"] and not records(out, "alarm.cabinet_unauthorised")
    out = rig.advance(5.1)
    assert SetCabinetLock("rack-back", False, needs_record=False) in out


def test_a_server_box_opened_without_its_custodian_is_an_alarm():
    """R17: the electric lock forced (no release) is `alarm.cabinet_unauthorised`; a
    reed-only cabinet marked custodians_only, opened while only others are inside, is
    one too; with its custodian inside it is not; nobody inside stays
    `alarm.cabinet_unattended`."""
    rig = _custodians_rig()
    _into_server_room(rig, "S1")
    out = rig.ev(CabinetChanged(cabinet="rack-back", locked=False))
    [a] = records(out, "alarm.cabinet_unauthorised")
    assert a.fields == {"cabinet": "rack-back", "area": "server-room", "why": "not_released",
                        "inside": ["S1"]}  # fmt: skip
    guarded = replace(CFG.cabinets["cab-a"], custodians_only=True)
    cfg = replace(CFG, cabinets={**CFG.cabinets, "cab-a": guarded})
    people = [replace(p, cabinets=frozenset({"cab-a"})) if p.id == "A1" else p for p in PEOPLE]
    rig = Rig(cfg=cfg, acl=AccessList(3, "tokyo-hq", "k", {p.id: p for p in people}))
    _enter(rig, "S2")
    out = rig.ev(CabinetChanged(cabinet="cab-a", locked=False))
    [a] = records(out, "alarm.cabinet_unauthorised")
    assert (a.fields["why"], a.fields["inside"]) == ("no_custodian_inside", ["S2"])
    rig.ev(CabinetChanged(cabinet="cab-a", locked=True))
    _enter(rig, "A1")
    out = rig.ev(CabinetChanged(cabinet="cab-a", locked=False))
    assert not records(out, "alarm.cabinet_unauthorised")
    assert records(out, "cabinet.unlocked")[0].fields["inside"] == ["A1", "S2"]
    rig.ev(CabinetChanged(cabinet="cab-a", locked=True))
    _leave(rig, "S2")
    _leave(rig, "A1")
    out = rig.ev(CabinetChanged(cabinet="cab-a", locked=False))
    assert records(out, "alarm.cabinet_unattended") and not records(
        out, "alarm.cabinet_unauthorised"
    )


def _carry_out_rig(approval=True):
    area = replace(CFG.areas["handling"], carry_out=True, carry_out_approval=approval)
    cfg = replace(CFG, areas={**CFG.areas, "handling": area})
    people = [replace(p, approves_carry_out=True) if p.id == "A1" else p for p in PEOPLE]
    rig = Rig(cfg=cfg, acl=AccessList(3, "tokyo-hq", "k", {p.id: p for p in people}))
    for pid in ("S1", "A1", "S2"):
        _enter(rig, pid)
    return rig


def test_taking_a_pc_out_needs_the_approvers_card():
    """R18: at exit the keypad asks what is taken out; an approved PC needs a second card
    of someone inside with the right to approve: a colleague without it, and the leaver
    themself, are refused and recorded; the approver's card lets the leaver out, and the
    exit record carries the item and the approver."""
    rig = _carry_out_rig()
    out = rig.tap("S1", reader="exit")
    assert not records(out) and _step(rig) == "carry_out"
    assert not records(rig.keys("1#"))  # approved_pc: now the approver's card
    assert _step(rig) == "carry_out_approval"
    [r] = records(rig.tap("S2", reader="exit"))
    assert (r.type, r.fields["reason"], r.fields["approver"]) == (
        "carry_out.refused", "not_approver", "S2",
    )  # fmt: skip
    [r] = records(rig.tap("S1", reader="exit"))
    assert r.fields["reason"] == "self"
    out = rig.tap("A1", reader="exit")
    approved, ex = records(out)
    assert approved.type == "carry_out.approved" and approved.fields["item"] == "approved_pc"
    assert (ex.type, ex.fields["person"], ex.fields["carry_out"]) == (
        "door.exit", "S1", "approved_pc",
    )  # fmt: skip
    assert ex.fields["carry_out_approver"] == "A1" and unlocks(out)
    assert "S1" not in _inside(rig) and "A1" in _inside(rig)  # the approver stays inside


def test_nothing_taken_out_and_unapproved_carry_out():
    """R18, Invariant 4: "nothing" lets the leaver out at once; a declared item with no
    approval in time is an alarm, and the leaver is let out all the same; an area that
    does not ask for approval records the item with the exit."""
    rig = _carry_out_rig()
    rig.tap("S2", reader="exit")
    [ex] = records(rig.keys("0#"))
    assert ex.type == "door.exit" and ex.fields["carry_out"] == "none"
    rig.tap("S1", reader="exit")
    rig.keys("2#")  # approved media, and nobody comes to approve
    out = rig.advance(31)
    alarm, ex = records(out)
    assert alarm.type == "alarm.carry_out_unapproved" and alarm.fields["item"] == "approved_media"
    assert ex.type == "door.exit" and ex.fields["carry_out_unfinished"] == "timeout"
    assert unlocks(out)
    rig = _carry_out_rig(approval=False)
    rig.tap("S1", reader="exit")
    [ex] = records(rig.keys("2#"))
    assert ex.fields["carry_out"] == "approved_media" and "carry_out_approver" not in ex.fields


def _pin_rig(**life):
    people = [replace(p, **life) if p.id == "S1" else p for p in PEOPLE]
    acl = AccessList(3, "tokyo-hq", "k", {p.id: p for p in people})
    return Rig(acl=acl, pin_hash=lambda pin: f"scrypt$test${pin}")


def test_an_initial_pin_is_changed_before_it_opens_anything():
    """R19, R3: the administrator's initial PIN opens nothing until the holder sets a new
    one at the keypad (twice); the new PIN is kept as a hash on this device (StorePin) and
    recorded as `pin.changed` without any digit; the initial PIN no longer works."""
    from edged.core.actions import StorePin

    rig = _pin_rig(pin_initial=True)
    rig.tap("S1", reader="server-entry")
    assert not records(rig.keys("1234#", door="server"))
    assert _step(rig, "server") == "pin_new"
    assert not records(rig.keys("5678#", door="server"))
    out = rig.keys("5678#", door="server")
    changed, granted = records(out)
    assert changed.type == "pin.changed" and granted.type == "door.granted"
    assert "5678" not in repr(records(out)) and "1234" not in repr(records(out))
    [store] = [a for a in out if isinstance(a, StorePin)]
    assert store.hash == "scrypt$test$5678" and "scrypt" not in repr(store)
    _leave(rig, "S1", door="server", reader="server-exit", confirm="5678#")
    rig.tap("S1", reader="server-entry")
    [d] = records(rig.keys("1234#", door="server"))
    assert d.fields["reason"] == "pin_wrong"
    rig.tap("S1", reader="server-entry")
    assert records(rig.keys("5678#", door="server"))[0].type == "door.granted"


def test_a_new_pin_that_repeats_wrongly_or_keeps_the_old_is_refused():
    """R19: the repeat must match; the new PIN must differ from the initial one."""
    rig = _pin_rig(pin_initial=True)
    rig.tap("S1", reader="server-entry")
    rig.keys("1234#5678#", door="server")
    [d] = records(rig.keys("5679#", door="server"))
    assert (d.fields["reason"], d.fields["why"]) == ("pin_change_failed", "repeat_differs")
    rig.tap("S1", reader="server-entry")
    [d] = records(rig.keys("1234#1234#", door="server"))
    assert (d.fields["reason"], d.fields["why"]) == ("pin_change_failed", "new_pin_unfit")
    rig.tap("S1", reader="server-entry")  # the initial PIN still holds, and still asks
    assert not records(rig.keys("1234#", door="server"))
    assert _step(rig, "server") == "pin_new"


def test_an_expired_pin_opens_nothing_and_one_ending_soon_is_warned_of():
    """R19: after its expiry a right PIN is refused as `pin_expired` (and does not count
    towards lock-out); within the warning days the grant says how many days are left."""
    rig = _pin_rig(pin_expires=dt.date(2026, 11, 23))
    rig.tap("S1", reader="server-entry")
    [d] = records(rig.keys("1234#", door="server"))
    assert (d.fields["reason"], d.fields["expired"]) == ("pin_expired", "2026-11-23")
    for attempt in range(CFG.policy.pin_attempts):  # a right PIN counted nothing
        rig.tap("S1", reader="server-entry")
        [d] = records(rig.keys("0000#", door="server"), "door.denied")
        assert d.fields["attempt"] == attempt + 1
    rig = _pin_rig(pin_expires=dt.date(2026, 12, 4))
    rig.tap("S1", reader="server-entry")
    [g] = records(rig.keys("1234#", door="server"))
    assert g.type == "door.granted" and g.fields["pin_expires_in_days"] == 10


def test_a_pin_issued_again_by_the_administrator_replaces_the_one_changed_here():
    """R19: a PIN changed at the door holds until the administrator issues a newer one."""
    from edged.core.state import LocalPin

    rig = _pin_rig(pin_issued=dt.date(2026, 11, 1))
    rig.core.load_local_pins(
        {"S1": LocalPin("scrypt$test$9999", dt.date(2026, 10, 1), dt.date(2027, 4, 1))}
    )
    rig.tap("S1", reader="server-entry")
    assert records(rig.keys("1234#", door="server"))[0].type == "door.granted"
    rig = _pin_rig(pin_issued=dt.date(2026, 9, 1))
    rig.core.load_local_pins(
        {"S1": LocalPin("scrypt$test$9999", dt.date(2026, 10, 1), dt.date(2027, 4, 1))}
    )
    rig.tap("S1", reader="server-entry")
    assert records(rig.keys("9999#", door="server"))[0].type == "door.granted"


def test_areas_that_accept_only_proven_cards():
    """R1, R11, R17 (issue 18): where an area takes only cards that prove themselves, an
    identifier alone is card_kind_not_allowed at its door and at its cabinet's reader,
    naming whose number it carried; the same card proven goes on as usual; a failed
    proof is card_auth_failed at any reader."""
    from edged.core.events import CardAuthFailed

    areas = {n: replace(a, cards=frozenset({"desfire"})) for n, a in CFG.areas.items()}
    people = [replace(p, cabinets=frozenset({"rack-back"})) if p.id == "A1" else p
              for p in PEOPLE]  # fmt: skip
    rig = Rig(cfg=replace(CFG, areas=areas), acl=AccessList(3, "tokyo-hq", "k",
              {p.id: p for p in people}))  # fmt: skip
    d = only(rig.tap("S2"), "door.denied")
    assert (d["reason"], d["person"], d["accepted"]) == ("card_kind_not_allowed", "S2",
                                                         ["desfire"])  # fmt: skip
    out = rig.ev(CardPresented(reader="entry", card=CARD["S2"], kind="desfire", proof="desfire"))
    assert not records(out) and rig.core.snapshot()["prompts"]["main"]["step"] == "purpose"
    rig.ev(CardPresented(reader="server-entry", card=CARD["A1"], kind="desfire",
                         proof="desfire"))  # fmt: skip
    assert records(rig.keys("#1234#", door="server"), "door.granted")
    [c] = records(rig.tap("A1", reader="rack"), "cabinet.denied")
    assert c.fields["reason"] == "card_kind_not_allowed"
    out = rig.ev(CardPresented(reader="rack", card=CARD["A1"], kind="desfire", proof="desfire"))
    assert records(out, "cabinet.granted")
    out = rig.ev(CardAuthFailed(reader="exit", kind="piv", reason="bad", card=CARD["S1"]))
    f = only(out, "door.denied")
    assert (f["reason"], f["person"], f["direction"]) == ("card_auth_failed", "S1", "exit")
    assert not unlocks(out)
    out = rig.ev(CardAuthFailed(reader="rack", kind="desfire", reason="bad", card=CARD["A1"]))
    f = only(out, "cabinet.denied")
    assert (f["reason"], f["person"], f["cabinet"]) == ("card_auth_failed", "A1", "rack-back")


def test_every_card_read_passes_the_one_card_gate():
    """R1, R2, R17, R18 (issue 35): where an area takes only proven cards, an unproven copy
    of a card is refused at every place a card is read, not only at the entry: as an
    escort, as the carry-out approver (the copy approved before), as a custodian at a
    cabinet, and at the exit, where it opens the door (never trapped) but counts nobody
    out. An approver whose right has ended, or whose card is locked out, is refused too."""
    areas = {n: replace(a, cards=frozenset({"desfire"})) for n, a in CFG.areas.items()}
    areas["handling"] = replace(areas["handling"], carry_out=True, carry_out_approval=True)
    people = [replace(p, approves_carry_out=True, cabinets=frozenset({"rack-back"}))
              if p.id in ("A1", "E1") else p for p in PEOPLE]  # fmt: skip
    rig = Rig(cfg=replace(CFG, areas=areas),
              acl=AccessList(3, "tokyo-hq", "k", {p.id: p for p in people}))  # fmt: skip

    def proven(pid, reader="entry"):
        return rig.ev(CardPresented(reader=reader, card=CARD[pid], kind="desfire",
                                    proof="desfire"))  # fmt: skip

    # Escort: the visitor waits; the escort's copy does not take them in.
    proven("V1")
    d = only(rig.tap("S1"), "door.denied")
    assert (d["reason"], d["person"]) == ("card_kind_not_allowed", "S1")
    assert "V1" not in _inside(rig)
    rig.advance(CFG.policy.escort_seconds + 1)  # nobody came for the visitor
    # Carry-out: the copy of the approver's card approves nothing; the card itself does.
    for pid in ("S1", "A1", "S2"):
        _enter(rig, pid, proof="desfire")
    proven("S1", reader="exit")
    rig.keys("1#")
    assert _step(rig) == "carry_out_approval"
    [r] = records(rig.tap("A1", reader="exit"))
    assert (r.type, r.fields["reason"], r.fields["approver"]) == (
        "carry_out.refused", "card_kind_not_allowed", "A1")  # fmt: skip
    [r] = records(proven("E1", reader="exit"))  # proven, but the right ended
    assert (r.type, r.fields["reason"]) == ("carry_out.refused", "expired")
    out = proven("A1", reader="exit")
    assert records(out, "carry_out.approved") and only(out, "door.exit")["person"] == "S1"
    # Exit: the copy opens the door but counts nobody out.
    out = rig.tap("S2", reader="exit")
    ex = only(out, "door.exit")
    assert (ex["was_inside"], ex["reason"], ex["person"]) == (False, "card_kind_not_allowed",
                                                             "S2")  # fmt: skip
    assert unlocks(out) and "S2" in _inside(rig)
    # A locked-out approver's own card approves nothing either: wrong PINs at the server
    # room's door until the card is locked out.
    for _ in range(CFG.policy.pin_attempts):
        proven("A1", reader="server-entry")
        out = rig.keys("#0000#", door="server")
    assert records(out, "alarm.pin_lockout")
    proven("S2", reader="exit")
    rig.keys("1#")
    [r] = records(proven("A1", reader="exit"))
    assert (r.type, r.fields["reason"]) == ("carry_out.refused", "pin_locked_out")
    assert _step(rig) == "carry_out_approval"  # still waiting
    # A custodian's copy at the cabinet's reader.
    [c] = records(rig.tap("A1", reader="rack"), "cabinet.denied")
    assert (c.fields["reason"], c.fields["person"]) == ("card_kind_not_allowed", "A1")


def _enter(rig, pid, **card):
    """``pid`` through the main door: the card, a purpose, no carry-in (an administrator
    first passes the admin choice with "#")."""
    if card:
        rig.ev(CardPresented(reader="entry", card=CARD[pid], kind="desfire", **card))
    else:
        rig.tap(pid)
    [g] = records(rig.keys(("#" if pid.startswith("A") else "") + "1#0#"), "door.granted")
    return g.fields


def _leave(rig, pid, door="main", reader="exit", confirm="#"):
    """``pid`` out by ``door``'s exit reader, confirming the lock check if asked (with
    ``confirm``: a PIN and "#" where the area asks one)."""
    out = rig.tap(pid, reader=reader)
    if rig.core.snapshot()["prompts"].get(door, {}).get("step") == "lockcheck":
        out += rig.keys(confirm, door=door)
    assert only(out, "door.exit")["was_inside"]


def _area_rig(**area):
    a = replace(CFG.areas["handling"], **area)
    return Rig(cfg=replace(CFG, areas={**CFG.areas, "handling": a}))


def test_an_exit_by_the_button_is_never_silent_and_the_last_one_out_still_checks():
    """R1, R6, R7 (issue 37): before, an exit by the button left everyone counted inside
    for good, so no last leaver was ever asked to check the cabinets and the next
    morning's tap was refused as already inside. The press names who may have left and
    offers the last-out check; the one who taps out while everyone else counted is in
    doubt checks the cabinets; the one who left untapped is let in the next day."""
    rig = Rig()
    _enter(rig, "S1")
    _enter(rig, "S2")
    rig.advance(10)
    out = rig.ev(ExitButton(door="main"))
    [req] = records(out, "door.exit_request")
    assert req.fields["may_have_left"] == ["S1", "S2"] and req.fields["last_out_offered"]
    assert unlocks(out)  # the door opens all the same (Invariant 4)
    snap = rig.core.snapshot()
    assert snap["uncertain"] == {"handling": ["S1", "S2"]}
    assert snap["last_out_offers"] == {"main": "handling"}
    # S2 taps out at the offer: S1 may have gone, so S2 is asked to check the cabinets.
    assert not records(rig.tap("S2", reader="exit"))
    assert rig.core.snapshot()["prompts"]["main"]["step"] == "lockcheck"
    check, ex = records(rig.keys("#"))
    assert check.type == "lockcheck.confirmed" and check.fields["uncertain"] == ["S1"]
    assert (ex.type, ex.fields["person"], ex.fields["last_leaver"]) == ("door.exit", "S2", True)
    assert rig.core.snapshot()["last_out_offers"] == {}
    # The next morning, S1 (who left by the button) is let in, and says why.
    rig.advance(12 * 3600)
    g = _enter(rig, "S1")
    assert (g["person"], g["passback"]) == ("S1", "uncertain")
    assert rig.core.snapshot()["uncertain"] == {}
    # Hard anti-passback still holds for a count that is certain.
    d = only(rig.tap("S1"), "door.denied")
    assert d["reason"] == "already_inside"


def test_leaving_untapped_where_tapping_out_is_required_is_an_alarm():
    """R1, R8: an area may require tapping out; the offer running out untaken is
    alarm.exit_without_tap naming who may have left. Elsewhere it is not an alarm."""
    for tap_out, alarms in (("required", 1), ("optional", 0)):
        rig = _area_rig(tap_out=tap_out)
        _enter(rig, "S2")
        rig.ev(ExitButton(door="main"))
        out = rig.advance(CFG.policy.lockcheck_seconds + 1)
        got = records(out, "alarm.exit_without_tap")
        assert len(got) == alarms, (tap_out, out)
        if got:
            assert got[0].fields["may_have_left"] == ["S2"]
        assert rig.core.snapshot()["last_out_offers"] == {}


def test_soft_anti_passback_records_and_lets_in():
    """R1: with anti_passback = "soft" a tap in by someone counted inside is let in and
    the grant says so; hard (the default) refuses it."""
    rig = _area_rig(anti_passback="soft")
    _enter(rig, "S2")
    g = _enter(rig, "S2")
    assert g["passback"] == "soft"
    hard = Rig()
    _enter(hard, "S2")
    assert only(hard.tap("S2"), "door.denied")["reason"] == "already_inside"


def test_a_cabinet_opened_by_someone_in_doubt_says_so():
    """R6, R17: after an exit by the button and no card since, a cabinet's opening record
    names who is counted inside but in doubt; a card shown since clears the doubt. (No
    alarm: it would ring whenever a colleague had left by the button.)"""
    rig = Rig()
    _enter(rig, "S2")
    rig.ev(ExitButton(door="main"))
    rig.advance(CFG.policy.lockcheck_seconds + 1)
    out = rig.ev(CabinetChanged(cabinet="cab-a", locked=False))
    u = only(out, "cabinet.unlocked")
    assert (u["inside"], u["uncertain"]) == (["S2"], ["S2"])
    assert not records(out, "alarm.cabinet_unattended")
    rig.ev(CabinetChanged(cabinet="cab-a", locked=True))
    rig.tap("S2")  # back: the grant says who is there
    rig.keys("1#0#")
    u = only(rig.ev(CabinetChanged(cabinet="cab-a", locked=False)), "cabinet.unlocked")
    assert "uncertain" not in u


def test_the_doubt_of_an_untapped_exit_survives_a_restart():
    """R1, R14: replayed from the journal, the people in doubt are still in doubt: after
    a power cut the one who left by the button is let in, not refused."""
    rig = Rig()
    _enter(rig, "S2")
    rig.ev(ExitButton(door="main"))
    again = Rig()
    again.core.restore(replayable(rig.log, rig.mono), again.now, "boot-2")
    assert again.core.snapshot()["uncertain"] == {"handling": ["S2"]}
    assert _enter(again, "S2")["passback"] == "uncertain"
    from edged.core.replay import snapshot_state

    snap = snapshot_state(replayable(rig.log, rig.mono), rig.now, "boot-1")
    assert snap["uncertain"] == {"handling": ["S2"]}


def test_a_pin_change_the_journal_refused_did_not_happen():
    """R19, Invariant 2: the journal refused the step that changed a PIN and let its
    holder in: the core forgets the new PIN (the initial one still asks for a change)
    and the grant, through revert_unrecorded, not through its fields."""
    rig = _pin_rig(pin_initial=True)
    rig.tap("S1", reader="server-entry")
    out = rig.keys("1234#5678#5678#", door="server")
    assert records(out, "pin.changed") and records(out, "door.granted")
    rig.core.revert_unrecorded(out)
    assert rig.core.snapshot()["occupancy"]["server-room"] == []
    rig.tap("S1", reader="server-entry")
    assert not records(rig.keys("1234#", door="server"))
    assert rig.core.snapshot()["prompts"]["server"]["step"] == "pin_new"


def test_closing_time_raises_an_alarm_until_a_last_leaver_checks():
    """R6, R7 (issue 37): at the area's closing time, someone still counted inside is
    alarm.area_not_closed (red LED), once; the last leaver's confirmed check clears it.
    The next day, an area used and closed properly before closing raises nothing."""
    rig = _area_rig(closing_time="19:00")
    _enter(rig, "S2")
    out = rig.advance(8 * 3600 + 59 * 60)  # 18:59 JST: not yet
    assert not records(out, "alarm.area_not_closed")
    out = rig.advance(61)
    a = only(out, "alarm.area_not_closed")
    assert (a["inside"], a["lockcheck_today"], a["day"]) == (["S2"], False, "2026-11-24")
    assert rig.core.snapshot()["alarm"] and rig.core.snapshot()["not_closed"]
    assert not records(rig.advance(60), "alarm.area_not_closed")  # once a day
    rig.tap("S2", reader="exit")
    out = rig.keys("#")
    assert [r.type for r in records(out)] == ["lockcheck.confirmed", "alarm.cleared", "door.exit"]
    assert only(out, "alarm.cleared")["was"] == "area_not_closed"
    assert not rig.core.snapshot()["alarm"]
    rig.advance(14 * 3600)  # Wednesday 09:01
    _enter(rig, "S2")
    rig.tap("S2", reader="exit")
    assert records(rig.keys("#"), "lockcheck.confirmed")
    assert not records(rig.advance(10 * 3600), "alarm.area_not_closed")  # 19:01


def test_closing_time_asks_for_a_check_after_the_area_was_used():
    """R6: an area used during the day but whose last leaver never confirmed (the exit
    button, say) is not closed at closing time, though nobody is counted inside any more;
    an area nobody entered needs no check; a holiday is not judged."""
    rig = _area_rig(closing_time="19:00")
    _enter(rig, "S2")
    _enter(rig, "S1")
    rig.tap("S1", reader="exit")  # not the last: no check
    rig.ev(ExitButton(door="main"))  # S2 out by the button...
    rig.advance(CFG.policy.lockcheck_seconds + 1)  # ...and nobody tapped at the offer
    a = only(rig.advance(9 * 3600), "alarm.area_not_closed")
    assert (a["lockcheck_today"], a["uncertain"]) == (False, ["S2"])
    quiet = _area_rig(closing_time="19:00")
    assert not records(quiet.advance(9 * 3600 + 60), "alarm.area_not_closed")
    holiday = Rig(cfg=_area_rig(closing_time="19:00").core.cfg, wall=TUE_10 - 86_400_000)
    _enter(holiday, "S1")  # 23 November: a national holiday (S1 has no working hours)
    assert not records(holiday.advance(9 * 3600 + 60), "alarm.area_not_closed")


def test_the_closing_alarm_survives_a_restart_and_is_not_raised_twice():
    """R6, R14: replayed from the journal, the alarm still stands (red LED), is not raised
    again the same evening, and the last leaver's check still clears it."""
    rig = _area_rig(closing_time="19:00")
    _enter(rig, "S2")
    rig.advance(9 * 3600 + 60)
    again = _area_rig(closing_time="19:00")
    again.mono, again.wall = rig.mono, rig.wall
    ts = "2026-11-24T10:01:00.000Z"  # 19:01 JST, when the records were written
    again.core.restore(replayable(rig.log, rig.mono, ts=ts), again.now, "boot-2")
    assert again.core.snapshot()["not_closed"] == {"handling": "2026-11-24"}
    assert again.core.snapshot()["alarm"]
    assert not records(again.advance(60), "alarm.area_not_closed")
    again.tap("S2", reader="exit")
    assert records(again.keys("#"), "alarm.cleared")


def test_nobody_stays_counted_inside_for_days():
    """R1 (issue 37): someone who left without being counted (following another out) was
    refused as already inside every morning after. Past the area's max_stay_hours (18 by
    default) they are no longer counted, recorded as occupancy.expired, and let in; with
    0 they stay counted."""
    rig = Rig()
    assert CFG.areas["handling"].max_stay_hours == 18.0
    _enter(rig, "S2")
    assert not records(rig.advance(17 * 3600), "occupancy.expired")
    e = only(rig.advance(3600), "occupancy.expired")
    assert (e["person"], e["area"], e["hours"]) == ("S2", "handling", 18.0)
    assert e["since"] == "2026-11-24T01:00:00.000Z"
    assert rig.core.snapshot()["occupancy"]["handling"] == []
    rig.advance(6 * 3600)  # Wednesday 10:00
    assert "passback" not in _enter(rig, "S2")
    never = _area_rig(max_stay_hours=0)
    _enter(never, "S2")
    assert not records(never.advance(48 * 3600), "occupancy.expired")
    assert never.core.snapshot()["occupancy"]["handling"] == ["S2"]


def test_the_longest_stay_counts_from_the_grant_across_a_restart():
    """R1, R14: replayed from the journal, the stay counts from the grant's time, not
    from the restart."""
    rig = Rig()
    _enter(rig, "S2")
    again = Rig(wall=TUE_10 + 17 * 3_600_000)
    again.core.restore(replayable(rig.log, rig.mono, ts="2026-11-24T01:00:00.000Z"),
                       again.now, "boot-2")  # fmt: skip
    assert again.core.snapshot()["occupancy"]["handling"] == ["S2"]
    assert only(again.advance(3600), "occupancy.expired")["person"] == "S2"


def test_a_cabinet_left_open_is_reminded_then_an_alarm_until_locked():
    """R7, R17 (issue 37; the rules ask that cabinets be locked as soon as the work no
    longer needs them): at max_open_minutes a reminder at the area's door, at twice as
    long the alarm (red LED) naming who is inside; locking it clears the alarm and starts
    the count again next time. Without a limit nothing is said."""
    cabs = {**CFG.cabinets, "cab-a": replace(CFG.cabinets["cab-a"], max_open_minutes=30.0)}
    rig = Rig(cfg=replace(CFG, cabinets=cabs))
    _enter(rig, "S2")
    rig.ev(CabinetChanged(cabinet="cab-a", locked=False))
    rig.ev(CabinetChanged(cabinet="cab-b", locked=False))  # no limit: never mentioned
    assert not records(rig.advance(29 * 60), "cabinet.open_reminder")
    r = only(rig.advance(60), "cabinet.open_reminder")
    assert (r["cabinet"], r["door"], r["minutes"], r["inside"]) == ("cab-a", "main", 30, ["S2"])
    assert not rig.core.snapshot()["alarm"]
    a = only(rig.advance(30 * 60), "alarm.cabinet_open_too_long")
    assert (a["cabinet"], a["minutes"]) == ("cab-a", 60) and rig.core.snapshot()["alarm"]
    assert not records(rig.advance(3 * 3600), "alarm.cabinet_open_too_long")  # once
    c = only(rig.ev(CabinetChanged(cabinet="cab-a", locked=True)), "alarm.cleared")
    assert (c["cabinet"], c["was"]) == ("cab-a", "cabinet_open_too_long")
    assert not rig.core.snapshot()["alarm"]
    rig.ev(CabinetChanged(cabinet="cab-a", locked=False))
    assert not records(rig.advance(29 * 60), "cabinet.open_reminder")  # counted anew
    assert records(rig.advance(60), "cabinet.open_reminder")


def test_a_door_named_like_an_area_does_not_lend_it_its_card_rules():
    """R1, R17: the card gate asks the area its card rules; it took a name as a door's
    first, so a door called like another area made that area's rules its own door's."""
    areas = {**CFG.areas, "server-room": replace(CFG.areas["server-room"],
                                                 cards=frozenset({"desfire"}))}  # fmt: skip
    doors = {("server-room" if n == "main" else n): replace(d, name="server-room")
             if n == "main" else d for n, d in CFG.doors.items()}  # fmt: skip
    rig = Rig(cfg=replace(CFG, areas=areas, doors=doors))
    d = only(rig.tap("A1", reader="server-entry"), "door.denied")
    assert (d["reason"], d["area"]) == ("card_kind_not_allowed", "server-room")


def test_a_daily_reset_counts_out_who_went_in_before_it_and_survives_restarts():
    """R1, R2 (issue 37): an area's reset_time counts out, in one signed record by the
    schedule, whoever is still counted inside from before it (nobody is refused in the
    morning for yesterday's exit button); who went in after it stays counted, also
    across a restart later that day, which resets nothing again."""
    rig = _area_rig(reset_time="03:00", max_stay_hours=0)
    _enter(rig, "S2")  # Tuesday 10:00, never counted out
    rig.advance(17 * 3600 + 30 * 60)  # Wednesday 03:30
    [r] = records(rig.log, "occupancy.reset")
    assert r.fields == {"area": "handling", "by": "schedule", "at": "03:00", "removed": ["S2"]}
    assert _inside(rig) == []
    reset_log = list(rig.log)
    rig.advance(6 * 3600)  # 09:30: S1 comes in after the reset
    _enter(rig, "S1")
    assert not records(rig.advance(3600), "occupancy.reset")
    assert _inside(rig) == ["S1"]

    def replayed(actions, ts):
        return [{**b, "ts": ts} for b in replayable(actions, rig.mono)]

    again = _area_rig(reset_time="03:00", max_stay_hours=0)
    again.mono, again.wall = rig.mono, rig.wall
    cut = reset_log.index(r)
    journal = (replayed(reset_log[:cut], "2026-11-24T01:00:00.000Z")  # Tuesday 10:00
               + replayed([r], "2026-11-24T18:30:00.000Z")  # Wednesday 03:30
               + replayed(rig.log[len(reset_log):], "2026-11-25T00:30:00.000Z"))  # fmt: skip
    again.core.restore(journal, again.now, "boot-2")
    assert _inside(again) == ["S1"]
    assert not records(again.advance(60), "occupancy.reset")
    assert _inside(again) == ["S1"]
    # Without a reset time, nobody is counted out by the clock.
    plain = _area_rig(max_stay_hours=0)
    _enter(plain, "S2")
    plain.advance(24 * 3600)
    assert _inside(plain) == ["S2"]


def _pir_rig(**area):
    """The handling area with a presence sensor (PIR) on GPIO 11."""
    return _area_rig(presence_pin=11, presence_empty_minutes=30.0, max_stay_hours=0, **area)


def _motion(rig, moving, area="handling"):
    from edged.core.events import Presence

    return rig.ev(Presence(area=area, motion=moving))


def test_a_still_room_after_an_exit_is_empty_whatever_the_count_says():
    """R1, R6 (issue 37): two go in; one goes out and the other follows on the same
    unlock, uncounted. The presence sensor sees nobody for presence_empty_minutes after
    the exit: the area is confirmed empty (recorded, who the count still named), so the
    next morning nobody is refused as already inside. Motion meanwhile restarts the wait;
    without an exit it is never judged."""
    rig = _pir_rig()
    _enter(rig, "S1")
    _enter(rig, "S2")
    assert not records(rig.advance(3600), "occupancy.confirmed_empty")  # no exit yet
    out = rig.tap("S1", reader="exit")
    assert only(out, "door.exit")["was_inside"]
    _motion(rig, True)
    rig.advance(10 * 60)
    _motion(rig, False)  # S2 walks out behind S1; the room is still from here
    assert not records(rig.advance(29 * 60), "occupancy.confirmed_empty")
    [r] = records(rig.advance(61), "occupancy.confirmed_empty")
    assert r.fields == {"area": "handling", "removed": ["S2"], "minutes": 30}
    assert _inside(rig) == []
    assert not records(rig.advance(3600), "occupancy.confirmed_empty")  # once an exit
    # Someone moving keeps the count as it is.
    busy = _pir_rig()
    _enter(busy, "S1")
    _enter(busy, "S2")
    busy.tap("S1", reader="exit")
    _motion(busy, True)
    assert not records(busy.advance(3 * 3600), "occupancy.confirmed_empty")
    assert _inside(busy) == ["S2"]


def test_motion_in_an_empty_area_after_closing_is_an_alarm_until_someone_goes_in():
    """R6, R7 (issue 37): after the area's closing time, with nobody counted inside, the
    presence sensor seeing motion is alarm.presence_after_closing (red LED), raised once;
    it stands until someone goes in (recorded as cleared). Motion while someone is
    counted inside is no alarm; before closing neither."""
    rig = _pir_rig(closing_time="19:00")
    _motion(rig, True)
    assert not records(_motion(rig, False))  # 10:00: the area is open
    rig.advance(9 * 3600 + 60)  # 19:01, nobody was in: closed without an alarm
    assert not rig.core.alarm_active()
    out = _motion(rig, True)
    [a] = records(out, "alarm.presence_after_closing")
    assert a.fields == {"area": "handling", "door": "main"}
    assert rig.core.alarm_active() and Indicate("red", True) in out
    _motion(rig, False)
    assert not records(_motion(rig, True), "alarm.presence_after_closing")  # once
    _enter(rig, "A1")
    assert [r.fields for r in records(rig.log, "alarm.cleared")] == [
        {"area": "handling", "was": "presence_after_closing"}]  # fmt: skip
    assert not rig.core.alarm_active()
    assert not records(_motion(rig, True), "alarm.presence_after_closing")  # A1 inside


def test_the_presence_sensors_watch_survives_restarts():
    """R6, R7, R14 (issue 37), restarting at each state: after closing with nobody
    inside, a restarted door still treats the area as shut (motion is the alarm); a
    standing alarm is replayed (red LED) and cleared by the next person in; someone who
    went in after closing keeps the area open across a restart; an unsynchronised clock
    after a restart shuts nothing."""

    def restarted(rig, ts, synced=True):
        again = _pir_rig(closing_time="19:00")
        again.mono, again.wall, again.synced = rig.mono, rig.wall, synced
        again.core.restore(replayable(rig.log, rig.mono, ts=ts), again.now, "boot-2")
        return again

    rig = _pir_rig(closing_time="19:00")
    rig.advance(9 * 3600 + 60)  # 19:01, nobody in today
    evening = "2026-11-24T10:01:00.000Z"
    quiet = restarted(rig, evening)
    assert not quiet.core.alarm_active()
    assert records(_motion(quiet, True), "alarm.presence_after_closing")  # still shut
    alarmed = restarted(quiet, evening)  # restarted with the alarm standing
    assert alarmed.core.alarm_active() and alarmed.core.snapshot()["presence_alarm"] == [
        "handling"]  # fmt: skip
    _enter(alarmed, "A1")
    assert [r.fields["was"] for r in records(alarmed.log, "alarm.cleared")] == [
        "presence_after_closing"]  # fmt: skip
    # Someone came in at 19:30 and left: the area was used after closing; a restart at
    # 20:00 keeps it open (no alarm for the cleaner moving about).
    late = _pir_rig(closing_time="19:00")
    late.advance(9 * 3600 + 30 * 60)
    _enter(late, "S1")
    late.advance(30 * 60)
    at_eight = restarted(late, "2026-11-24T11:00:00.000Z")
    assert at_eight.core.snapshot()["occupancy"]["handling"] == ["S1"]
    assert not records(_motion(at_eight, True), "alarm.presence_after_closing")
    blind = restarted(rig, evening, synced=False)
    assert not records(_motion(blind, True), "alarm.presence_after_closing")
