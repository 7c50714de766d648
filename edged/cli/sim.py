"""Commands that drive a ``--simulate`` daemon's hardware (developers, the demo)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from edged.cli.common import add_broker_args
from edged.device.paths import StatePaths
from edged.simulators.format import format_records


def _request_when_up(sock: Path, req: dict[str, object], wait: float = 15.0) -> dict[str, Any]:
    """The request, once the daemon's socket answers: right after `edged run ... &` the
    daemon is still starting (pcscd, readers), and the first `sim` should not fail."""
    from edged.device.control import request

    deadline = time.monotonic() + wait
    while True:
        try:
            return request(sock, req)
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() >= deadline:
                raise
            # Polling a socket that does not exist yet: nothing to await. An Event's wait,
            # not time.sleep: under libfaketime (the clock-moved tests) Python 3.11's
            # absolute monotonic sleep fails with EINVAL (wolfcw/libfaketime#426).
            threading.Event().wait(0.2)


def _cmd_fleet(args: argparse.Namespace) -> int:
    """N simulated devices on one broker until interrupted (or ``--seconds``)."""
    import random
    import signal
    import threading

    from edged.cli.common import broker_from_args
    from edged.protocol.keys import load_public_key
    from edged.simulators.fleet import Fleet, FleetSettings

    fleet = Fleet(
        args.devices,
        broker_from_args(args),
        load_public_key(Path(args.collector_pubkey)),
        site=args.site,
        settings=FleetSettings(rate=args.rate, burst=args.burst, burst_every=args.burst_every),
    )
    fleet.write_trust(Path(args.trust_out))
    print(f"fleet: {args.devices} device keys in {args.trust_out}/{args.site}/", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fleet.start()
    fleet.generate(True)
    start = time.monotonic()
    last_written, last_t = 0, start
    next_restart = start + args.restart_every if args.restart_every else float("inf")
    while not stop.wait(args.report_every):
        now = time.monotonic()
        written, receipted = fleet.totals()
        connected = sum(d.connected for d in fleet.devices)
        rate = (written - last_written) / (now - last_t)
        last_written, last_t = written, now
        print(
            f"fleet: {connected}/{args.devices} connected, {written} written"
            f" ({rate:.0f}/s), {receipted} receipted, {written - receipted} waiting",
            flush=True,
        )
        if now >= next_restart:
            fleet.restart(random.choice(fleet.devices).device)  # noqa: S311 (a test load)
            next_restart = now + args.restart_every
        if args.seconds and now - start >= args.seconds:
            break
    fleet.generate(False)
    # What was written reaches the collector before the fleet goes (within --drain
    # seconds), so that the closing line's counts are exact, not a moment's snapshot.
    end = time.monotonic() + args.drain
    while not fleet.all_receipted() and time.monotonic() < end and not stop.wait(0.2):
        pass
    written, receipted = fleet.totals()
    print(f"fleet: done: {written} written, {receipted} receipted", flush=True)
    fleet.stop()
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    if args.sim_command == "fleet":
        return _cmd_fleet(args)

    req: dict[str, object] = {"cmd": args.sim_command}
    for key in ("card", "reader", "kind", "behaviour", "proof", "door", "action", "name", "keys",
                "area"):  # fmt: skip
        v = getattr(args, key, None)
        if v is not None:
            req[key] = v
    if args.sim_command in ("tamper", "motion"):
        req["active"] = args.state == "on"
    sock = StatePaths(Path(args.state_dir)).control_socket
    try:
        resp = _request_when_up(sock, req)
    except OSError as e:
        print(
            f"edged sim: cannot reach the daemon at {sock} ({e.strerror or e});"
            " is `edged run --simulate` running with this state directory?",
            file=sys.stderr,
        )
        return 2
    if resp.get("ok") and "lcd" in resp and not args.json:
        for door, rows in sorted(resp["lcd"].items()):
            if getattr(args, "door", None) in (None, door):
                print(f"display {door}:")
                for row in rows:
                    print(f"  |{row}|")
        return 0
    if args.json or "state" in resp:
        print(json.dumps(resp, ensure_ascii=False, indent=2))
    elif not resp.get("ok"):
        print(f"error: {resp.get('error')}")
    else:
        for line in format_records(resp.get("records", [])):
            print(line)
        if resp.get("note"):
            print(f"({resp['note']})")
        for ask in resp.get("asks", []):
            print(f"-> {ask}")
    return 0 if resp.get("ok") else 1


def register(sub: Any) -> None:
    """Add this audience's commands to the ``edged`` parser."""
    sim = sub.add_parser("sim", help="drive a --simulate daemon's hardware")
    sim.add_argument("--state-dir", default=os.environ.get("EDGED_STATE_DIR", "/var/lib/edged"))
    sim.add_argument("--json", action="store_true", help="print the full answer as JSON")
    ssub = sim.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    t = ssub.add_parser("tap", help="present a card and take it away")
    t.add_argument("card", help="card identifier in hex (FeliCa IDm 8 bytes, MIFARE UID 4/7)")
    t.add_argument("--reader", default="entry")
    t.add_argument("--kind", choices=["felica", "mifare", "mifare-ul", "iso14443b"])
    t.add_argument("--behaviour", choices=["ok", "error", "garbage", "long", "empty"])
    t.add_argument(
        "--proof",
        choices=["desfire", "desfire-copy"],
        help="a DESFire card enrolled for this site ([cards.desfire]), or a copy of its"
        " number without its key",
    )
    dr = ssub.add_parser("door", help="open or close the door")
    dr.add_argument("action", choices=["open", "close"])
    dr.add_argument("--door")
    cb = ssub.add_parser("cabinet", help="open (unlock) or close (lock) a cabinet")
    cb.add_argument("name")
    cb.add_argument("action", choices=["open", "close"])
    ky = ssub.add_parser("keys", help="press keypad keys, e.g. 1234#")
    ky.add_argument("keys")
    ky.add_argument("--door")
    eb = ssub.add_parser("exit-button", help="press the exit button")
    eb.add_argument("--door")
    tp = ssub.add_parser("tamper", help="open (on) or close (off) the enclosure")
    tp.add_argument("state", nargs="?", choices=["on", "off"], default="on")
    mo = ssub.add_parser("motion", help="someone moves in an area (on) or nobody (off)")
    mo.add_argument("area", help="the area whose presence sensor sees it")
    mo.add_argument("state", nargs="?", choices=["on", "off"], default="on")
    rd = ssub.add_parser("reader", help="unplug or plug a reader")
    rd.add_argument("reader")
    rd.add_argument("action", choices=["unplug", "plug"])
    ssub.add_parser("state", help="relay, LEDs, buzzer, doors and alarms as JSON")
    lc = ssub.add_parser("lcd", help="what each door's display shows")
    lc.add_argument("--door", help="only this door's display")
    fl = ssub.add_parser(
        "fleet",
        help="run N simulated devices (own keys and journals) against a broker and collector",
    )
    add_broker_args(fl)
    fl.add_argument("--devices", type=int, default=100, help="how many (default: 100)")
    fl.add_argument("--site", default="fleet", help="their site (default: fleet)")
    fl.add_argument(
        "--rate", type=float, default=100.0, help="records per second, whole fleet (default: 100)"
    )
    fl.add_argument("--burst", type=int, default=0, help="extra records in a burst (default: 0)")
    fl.add_argument(
        "--burst-every", type=float, default=10.0, help="seconds between bursts (default: 10)"
    )
    fl.add_argument(
        "--restart-every",
        type=float,
        default=0.0,
        help="restart a random device every S seconds (default: 0, never)",
    )
    fl.add_argument(
        "--collector-pubkey", required=True, help="collector_ed25519.pub: only its receipts count"
    )
    fl.add_argument(
        "--trust-out", required=True, help="where to write the devices' keys (SITE/DEVICE.pub)"
    )
    fl.add_argument("--seconds", type=float, default=0.0, help="stop after S (default: 0, never)")
    fl.add_argument(
        "--drain", type=float, default=30.0, metavar="S",
        help="at the end, wait up to S seconds for every record's receipt (default: 30)",
    )  # fmt: skip
    fl.add_argument(
        "--report-every", type=float, default=5.0, help="seconds between lines (default: 5)"
    )
    sim.set_defaults(handler=_cmd_sim)
