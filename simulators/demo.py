"""``edged demo``: the daemon on simulated hardware, with a scenario a person can follow.

Everything below the door is real software: pcscd with the vpcd virtual reader, pyscard,
gpiozero on its MockFactory, the signed journal. Only the card, the wires and the
switches are simulated. Each step prints the records it caused, as committed.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import zoneinfo
from dataclasses import replace
from pathlib import Path
from typing import Any

from edged.simulators.format import format_records

from edged.device.acl import import_admin_file, load_active, save_active
from edged.device.config import load_config
from edged.device.control import SimController
from edged.device.daemon import Daemon
from edged.device.examples import ACL_EXAMPLE, example_config, move_dates
from edged.device.journal import verify_journal
from edged.device.keys import has_identity, init_card_master, init_keys, load_keys
from edged.device.paths import CARD_MASTER_FILE, StatePaths
from edged.device.report import build_ledger, to_csv, to_html
from edged.errors import EdgedError
from edged.log import configure_logging
from edged.protocol.privacy import CardFingerprinter

STAFF_CARD = "012E4CD9A1B2C3D4"  # a FeliCa IDm; only its keyed fingerprint is ever stored


def _say(text: str, pause: float) -> None:
    print(text, flush=True)
    if pause:
        time.sleep(pause)  # pacing for a human watcher; --fast skips it


def run_demo(state_dir: Path, *, fast: bool = False, config: Path | None = None) -> int:
    """Run the scenario; returns 0 when every step behaved and the journal verifies."""
    pause = 0.0 if fast else 1.2
    state_dir = state_dir.resolve()
    cfg_path = config or example_config()
    if not cfg_path.exists():
        print(f"edged demo: no configuration at {cfg_path}; pass --config FILE")
        return 2
    cfg = load_config(cfg_path, state_dir=state_dir)
    # Time is compressed for the demo: the held-open alarm after 5 s instead of 30 (2 s
    # with --fast), and an escort's earlier tap covers a visitor for 5 s instead of 30.
    # Today is made a closed day of the site, to show a working-hours window kept shut.
    today = dt.datetime.now(zoneinfo.ZoneInfo(cfg.clock.timezone)).date()
    held = 2 if fast else 5
    cfg = replace(
        cfg,
        doors={n: replace(d, held_open_seconds=held) for n, d in cfg.doors.items()},
        policy=replace(cfg.policy, escort_seconds=5),
        calendar=replace(cfg.calendar, closed={**cfg.calendar.closed, today: "創立記念日"}),
        # Time windows are judged by the clock; a laptop or container without NTP would
        # have them all refused as clock_untrusted, which is not what this story shows.
        clock=replace(cfg.clock, assume_synced=True),
        # DESFire cards prove their keys; the site master key is made for the demo.
        cards=replace(
            cfg.cards, desfire_aid=bytes.fromhex("E1D6E0"),
            master_key_file=state_dir / CARD_MASTER_FILE,
        ),
    )  # fmt: skip
    if has_identity(state_dir):
        keys = load_keys(state_dir)
        _say(f"== device key in {state_dir} (key id {keys.key_id})", pause)
    else:
        keys = init_keys(state_dir)
        _say(f"== created a device key in {state_dir} (key id {keys.key_id}); files 0600", pause)

    if not (state_dir / CARD_MASTER_FILE).exists():
        init_card_master(state_dir)
    acl_file = cfg_path.parent / ACL_EXAMPLE
    story = {**STORY, "held": str(held)}
    if acl_file.exists():
        # The example's dates are moved to today, so its story holds on any day (R5).
        demo_acl = state_dir / "demo-acl.toml"
        text = acl_file.read_text(encoding="utf-8") + DEMO_PERSON
        demo_acl.write_text(move_dates(text, today, source=str(acl_file)), encoding="utf-8")
        acl_file = demo_acl
        fp = CardFingerprinter(keys.fingerprint_secret)
        current = load_active(state_dir, set(cfg.areas))
        acl = import_admin_file(
            acl_file,
            fp,
            site=cfg.site,
            areas=set(cfg.areas),
            cabinets=set(cfg.cabinets),
            version=current.version + 1 if current else 1,
        )
        save_active(state_dir, acl)
        _say(
            f"== imported {acl_file.name}: access list version {acl.version},"
            f" {len(acl.people)} people; only card fingerprints and PIN hashes are stored",
            pause,
        )
        story.update(_dates(acl, today, cfg.policy.expiry_warning_days, pause))

    log_path = state_dir / "edged.log"
    with open(log_path, "a", encoding="utf-8") as log_file:
        configure_logging(log_file, json=True)
        daemon = Daemon(cfg, simulate=True, control_socket=False)
        runner = threading.Thread(
            target=lambda: daemon.run(install_signals=False), name="daemon", daemon=True
        )
        runner.start()
        while not (daemon.running.wait(0.2) or daemon.stopped.is_set()):
            pass
        if not daemon.running.is_set():
            print(f"edged demo: the daemon did not start; see {log_path}")
            return 2
        _say(
            f"== daemon running on simulated hardware (site {cfg.site}, device {cfg.device});"
            f" its log: {log_path}",
            pause,
        )
        ctl = SimController(daemon)
        ok = True
        try:
            ok = _scenario(ctl, pause, story)
        except EdgedError as e:
            print(f"edged demo: step failed: {e}")
            ok = False
        finally:
            daemon.request_stop()
            runner.join(60)
    db = StatePaths(state_dir).journal
    result = verify_journal(db, {keys.key_id: keys.public_key})
    _say(f"== edged verify --db {db}", 0)
    print(result.summary())
    ledger = build_ledger(db, today, today, cfg.clock.timezone, result)
    report = state_dir / f"ledger-{today}.html"
    report.write_text(
        to_html(
            ledger,
            generated=dt.datetime.now(zoneinfo.ZoneInfo(cfg.clock.timezone)).strftime(
                "%Y-%m-%d %H:%M %Z"
            ),
            titles={name: a.title for name, a in cfg.areas.items()},
        ),
        encoding="utf-8",
    )
    (state_dir / f"ledger-{today}.csv").write_text(to_csv(ledger), encoding="utf-8")
    print(
        f"== the ledger (入退室管理表) for {today}: {report} (and .csv);"
        f" {len(ledger.visits)} visits, {len(ledger.lockchecks)} lock checks,"
        f" {len(ledger.denied)} denials, {len(ledger.alarms)} alarms"
    )
    return 0 if ok and result.ok else 1


def _step(
    ctl: SimController,
    title: str | None,
    req: dict[str, Any],
    pause: float,
    expect: str | None = None,
) -> bool:
    if title:
        print(f"\n-- {title}", flush=True)
    try:
        resp = ctl.dispatch(req)
    except Exception as e:  # one failed step is reported, the story goes on
        print(f"   failed: {e}")
        return False
    if resp.get("records"):
        for line in format_records(resp["records"]):
            print("   " + line, flush=True)
    else:
        core = ctl.dispatch({"cmd": "state"})["state"]["core"]
        asks = [
            f"keypad at {d} asks for: {p['step'].replace('_', '-')}"
            for d, p in core["prompts"].items()
        ]
        print("   (" + ("; ".join(asks) or "nothing recorded yet: waiting") + ")", flush=True)
    _show_display(ctl)
    if pause:
        time.sleep(pause)
    # "type" or "type:reason"
    seen = {r["type"] for r in resp.get("records", [])}
    seen |= {f"{r['type']}:{r.get('reason')}" for r in resp.get("records", [])}
    if expect is not None and expect not in seen:
        print(f"   (expected a {expect} record)")
        return False
    return True


_SHOWN: dict[str, str] = {}


def _show_display(ctl: SimController) -> None:
    """The door's LCD as a person at the door reads it, when it changed."""
    if ctl.d.displays is None:
        return
    for door, rows in sorted(ctl.dispatch({"cmd": "lcd"})["lcd"].items()):
        text = " / ".join(r.rstrip() for r in rows)
        if _SHOWN.get(door) != text:
            _SHOWN[door] = text
            print(f"   [display {door}] {text}", flush=True)


CARDS = {
    "yamada": "012E4CD9A1B2C3D4",  # S1001, staff, escort, PIN 4821 (FeliCa)
    "visitor": "04C5D6E7F80912",  # V0042, visitor (MIFARE Ultralight)
    "former": "0123456789ABCDEF",  # S0999, rights ended 66 days ago
    "admin": "04112233",  # A0001, administrator, escort (MIFARE Classic)
    "kato": "04D1E2F3",  # S1003, staff, any hour of any day the office is open
    "sato": "04D5E5F5A5B5C5",  # S1004 (added by the demo), a DESFire EV3 card
}

# The demo's own person: a DESFire card that proves its key (issue 18).
DEMO_PERSON = """
[[people]]
id = "S1004"
name = "Sato Jiro"
role = "staff"
cards = ["04D5E5F5A5B5C5"]            # MIFARE DESFire EV3: proves its AES key
areas = ["handling"]
valid_from = 2026-04-01
valid_until = 2027-03-31
"""

# What the narration says when no example list was imported (a --config elsewhere).
STORY = {"former_until": "the day his rights ended"}


def _dates(acl: Any, today: dt.date, warn_days: int, pause: float) -> dict[str, str]:
    """The narration's dates, read from the list as imported (they move with today)."""
    soon = acl.expiring(today, warn_days)
    if soon:
        _say(
            "== rights ending within"
            f" {warn_days} days (R5: renew them or they end by themselves): "
            + ", ".join(f"{p.id} on {p.valid_until}" for p in soon),
            pause,
        )
    former = acl.people.get("S0999")
    return {"former_until": str(former.valid_until)} if former else {}


Step = tuple[str | None, dict[str, Any], str | None]


def _scenario(ctl: SimController, pause: float, story: dict[str, str]) -> bool:
    y, v, f, a = CARDS["yamada"], CARDS["visitor"], CARDS["former"], CARDS["admin"]
    steps: list[Step] = [
        (
            "08:55 Yamada (staff) taps in at the handling area. The keypad asks the purpose"
            " of entry (入室理由)...",
            {"cmd": "tap", "card": y},
            None,
        ),
        ("...he types 1# (payroll)...", {"cmd": "keys", "keys": "1#"}, None),
        (
            "...and declares what he carries in: 0# (no devices). Granted: the record is"
            " committed, then the strike releases.",
            {"cmd": "keys", "keys": "0#"},
            "door.granted",
        ),
        (
            "He walks in; the door closes and relocks at once.",
            {"cmd": "door", "action": "open"},
            "door.opened",
        ),
        (None, {"cmd": "door", "action": "close"}, "door.closed"),
        (
            "09:10 On to the server room (管理区域): card, then his PIN on its keypad.",
            {"cmd": "tap", "card": y, "reader": "server-entry"},
            None,
        ),
        (None, {"cmd": "keys", "keys": "4821#", "door": "server"}, "door.granted"),
        (
            "Leaving it empty, he is its last leaver: the rack's back door is checked and he"
            " confirms with his PIN.",
            {"cmd": "tap", "card": y, "reader": "server-exit"},
            None,
        ),
        (None, {"cmd": "keys", "keys": "4821#", "door": "server"}, "lockcheck.confirmed"),
        (
            f"A former employee's card: refused, his rights ended on {story['former_until']} (R5).",
            {"cmd": "tap", "card": f},
            "door.denied:expired",
        ),
        (
            "Kato may come in at any hour of any day the office is open. Today is the"
            " company's foundation day (創立記念日, a closed day in [calendar]): refused as"
            " holiday (R5).",
            {"cmd": "tap", "card": CARDS["kato"]},
            "door.denied:holiday",
        ),
        (
            "Sato carries a MIFARE DESFire EV3 card. It proves that it holds its AES key,"
            " derived for this one card from the site master key; the door asks its"
            " questions...",
            {"cmd": "tap", "card": CARDS["sato"], "proof": "desfire"},
            None,
        ),
        (None, {"cmd": "keys", "keys": "1#0#"}, "door.granted"),
        (
            None,
            {"cmd": "tap", "card": CARDS["sato"], "proof": "desfire", "reader": "exit"},
            "door.exit",
        ),
        (
            "Someone copied Sato's card number onto a blank card. The copy cannot answer"
            " the door's fresh challenge: refused as card_auth_failed, naming whose card"
            " it pretends to be.",
            {"cmd": "tap", "card": CARDS["sato"], "proof": "desfire-copy"},
            "door.denied:card_auth_failed",
        ),
        (
            "Someone leaves with the exit button, without a card: the record names who may"
            " have left (Yamada, counted inside), the display offers the last-out check,"
            " and the door stays open...",
            {"cmd": "exit-button"},
            "door.exit_request",
        ),
        (None, {"cmd": "door", "action": "open"}, "door.opened"),
        (
            f"...until the held-open alarm sounds (after {story['held']} s in this demo, 30 s"
            " configured).",
            {"cmd": "wait-for", "type": "alarm.door_held_open", "timeout": 15},
            "alarm.door_held_open",
        ),
        ("Closed again: the alarm clears.", {"cmd": "door", "action": "close"}, "alarm.cleared"),
        (
            "10:00 A visitor taps in: nothing opens without an escort...",
            {"cmd": "tap", "card": v},
            None,
        ),
        (
            "...the administrator taps as escort; purpose 3# (audit), carry-in 1# (approved"
            " PC). Both are in the records.",
            {"cmd": "tap", "card": a},
            None,
        ),
        (None, {"cmd": "keys", "keys": "3#1#"}, "door.granted"),
        (
            "The visitor and the administrator tap out.",
            {"cmd": "tap", "card": v, "reader": "exit"},
            "door.exit",
        ),
        (
            "The administrator is now the last one known to be inside (Yamada may have left"
            " by the button), so the keypad asks the administrator to check the cabinets;"
            " # confirms.",
            {"cmd": "tap", "card": a, "reader": "exit"},
            None,
        ),
        (None, {"cmd": "keys", "keys": "#"}, "lockcheck.confirmed"),
        (
            "18:30 Yamada was inside after all, and is the last to leave, but cabinet cab-b"
            " is open: it is named, the red LED and the buzzer blink, and the door stays"
            " shut.",
            {"cmd": "cabinet", "name": "cab-b", "action": "open"},
            None,
        ),
        (None, {"cmd": "tap", "card": y, "reader": "exit"}, "lockcheck.open"),
        (
            "He locks it and taps again; the keypad asks him to confirm with #.",
            {"cmd": "cabinet", "name": "cab-b", "action": "close"},
            "cabinet.locked",
        ),
        (None, {"cmd": "tap", "card": y, "reader": "exit"}, None),
        (None, {"cmd": "keys", "keys": "#"}, "lockcheck.confirmed"),
        (
            "Night: someone opens the reader enclosure (tamper alarm)...",
            {"cmd": "tamper", "active": True},
            "alarm.tamper",
        ),
        (None, {"cmd": "tamper", "active": False}, "tamper.cleared"),
        (
            "...and a cabinet opens while nobody is inside.",
            {"cmd": "cabinet", "name": "cab-a", "action": "open"},
            "alarm.cabinet_unattended",
        ),
        (None, {"cmd": "cabinet", "name": "cab-a", "action": "close"}, "cabinet.locked"),
    ]
    ok = True
    for title, req, expect in steps:
        ok &= _step(ctl, title, req, pause, expect)
    return ok
