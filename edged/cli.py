"""The ``edged`` command line. Each sub-command is a small function returning an exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edged.cli_format import format_records
from edged.errors import ConfigError, EdgedError, JournalCorruptError, KeyFileError
from edged.keys import (
    PUBLIC_KEY_FILE,
    init_keys,
    key_id_of,
    key_paths,
    load_keys,
    load_public_key,
    public_key_pem,
)
from edged.privacy import CardFingerprinter

Handler = Callable[[argparse.Namespace], int]


def _cmd_keys_init(args: argparse.Namespace) -> int:
    role = "admin" if args.admin else "collector" if args.collector else None
    if role is not None:
        from edged.keys import init_role_key

        sk_role = init_role_key(Path(args.state_dir), role, force=args.force)
        print(f"created {role} signing key {Path(args.state_dir) / f'{role}_ed25519.key'} (0600)")
        print(f"key id: {key_id_of(sk_role.public_key())}")
        print(public_key_pem(sk_role.public_key()), end="")
        return 0
    keys = init_keys(Path(args.state_dir), force=args.force)
    sk, pk, fp = key_paths(Path(args.state_dir))
    print(f"created device signing key {sk} (0600)")
    print(f"created card fingerprint secret {fp} (0600)")
    print(f"public key {pk}")
    print(f"key id: {keys.key_id}")
    print(public_key_pem(keys.public_key), end="")
    return 0


def _cmd_keys_show(args: argparse.Namespace) -> int:
    keys = load_keys(Path(args.state_dir))
    print(f"key id: {keys.key_id}")
    print(public_key_pem(keys.public_key), end="")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from edged.journal import verify_journal

    db = Path(args.db)
    if args.pubkey:
        pub_path = Path(args.pubkey)
    else:
        pub_path = db.parent / PUBLIC_KEY_FILE
        if not args.json:
            print(
                f"using the public key in the journal's state directory: {pub_path}",
                file=sys.stderr,
            )
    try:
        pub = load_public_key(pub_path)
        result = verify_journal(db, {key_id_of(pub): pub})
    except (JournalCorruptError, KeyFileError) as e:
        if args.json:
            print(json.dumps({"ok": False, "error": str(e)}, ensure_ascii=False))
        else:
            print(f"ERROR: {e}")
        return 2
    if args.json:
        print(json.dumps(result.as_dict(), ensure_ascii=False, sort_keys=True))
    else:
        print(result.summary())
    if not result.ok:
        return 1
    return 3 if result.discontinuities else 0


def _cmd_report(args: argparse.Namespace) -> int:
    import datetime as _dt

    from edged.journal import verify_journal
    from edged.report import build_ledger, to_csv, to_html

    db = Path(args.db)
    pub_path = Path(args.pubkey) if args.pubkey else db.parent / PUBLIC_KEY_FILE
    try:
        start = _dt.date.fromisoformat(args.from_date)
        end = _dt.date.fromisoformat(args.to_date)
    except ValueError as e:
        raise ConfigError(f"--from/--to: {e} (use YYYY-MM-DD)") from None
    try:
        pub = load_public_key(pub_path)
        result = verify_journal(db, {key_id_of(pub): pub})
    except (JournalCorruptError, KeyFileError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    led = build_ledger(db, start, end, args.tz, result)
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        to_csv(led)
        if args.format == "csv"
        else to_html(led, lang=args.lang, device=args.device, generated=now)
    )
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(
            f"wrote {args.out}: {len(led.visits)} visits, {len(led.lockchecks)} lock checks,"
            f" {len(led.denied)} denials, {len(led.alarms)} alarms; journal "
            f"{'intact' if result.ok else 'NOT intact'}"
        )
    else:
        sys.stdout.write(text)
    return 0 if result.ok else 1


def _cmd_doctor(args: argparse.Namespace) -> int:
    from edged.doctor import run_doctor

    code, results = run_doctor(Path(args.config), Path(args.state_dir) if args.state_dir else None)
    for r in results:
        print(r.line())
    return code


def _cmd_demo(args: argparse.Namespace) -> int:
    from edged.demo import run_demo

    return run_demo(
        Path(args.state_dir), fast=args.fast, config=Path(args.config) if args.config else None
    )


def _cmd_config_check(args: argparse.Namespace) -> int:
    from edged.config import load_config

    cfg = load_config(Path(args.file))
    print(
        f"{args.file}: OK: site {cfg.site}, device {cfg.device}, {len(cfg.areas)} area(s),"
        f" {len(cfg.doors)} door(s), {len(cfg.cabinets)} cabinet(s), {len(cfg.readers)}"
        " reader(s)"
    )
    return 0


def _state_and_config(args: argparse.Namespace) -> tuple[Path, Any]:
    from edged.config import load_config

    cfg = load_config(Path(args.config), state_dir=Path(args.state_dir) if args.state_dir else None)
    return cfg.state_dir, cfg


def _cmd_acl_import(args: argparse.Namespace) -> int:
    import signal as _signal

    from edged.acl import import_admin_file, load_active, save_active

    state_dir, cfg = _state_and_config(args)
    keys = load_keys(state_dir)
    fp = CardFingerprinter(keys.fingerprint_secret)
    current = load_active(state_dir, set(cfg.areas))
    version = args.version or ((current.version + 1) if current else 1)
    if current is not None and version <= current.version:
        raise ConfigError(
            f"--version {version}: must be newer than the active list's version {current.version}"
        )
    acl = import_admin_file(
        Path(args.file), fp, site=cfg.site, version=version, areas=set(cfg.areas)
    )
    path = save_active(state_dir, acl)
    print(
        f"stored access list version {acl.version} ({len(acl.people)} people) in {path};"
        f" sha256 {acl.sha256[:16]}; card ids and PINs were not stored"
    )
    pid_file = state_dir / "edged.pid"
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, _signal.SIGHUP)
        print(f"asked the running daemon (pid {pid}) to load it")
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        print("no running daemon here; it loads the list when it starts")
    _warn_expiring(acl, cfg)
    return 0


def _warn_expiring(acl: Any, cfg: Any) -> None:
    import datetime as _dt
    import zoneinfo

    today = _dt.datetime.now(zoneinfo.ZoneInfo(cfg.clock.timezone)).date()
    for p in acl.expiring(today, cfg.policy.expiry_warning_days):
        print(
            f"WARNING: rights of {p.id} ({p.name}) end on {p.valid_until} "
            f"({(p.valid_until - today).days} days)"
        )


def _cmd_acl_show(args: argparse.Namespace) -> int:
    from edged.acl import load_active

    state_dir, cfg = _state_and_config(args)
    acl = load_active(state_dir, set(cfg.areas))
    if acl is None:
        print(f"no access list in {state_dir} (import one with: edged acl import FILE)")
        return 1
    print(
        f"access list version {acl.version}, site {acl.site}, {len(acl.people)} people,"
        f" sha256 {acl.sha256[:16]}"
    )
    print(f"{'id':<12} {'name':<20} {'role':<8} {'areas':<24} {'valid':<23} escort pin")
    for p in sorted(acl.people.values(), key=lambda p: p.id):
        print(
            f"{p.id:<12} {p.name:<20} {p.role:<8} {','.join(sorted(p.areas)):<24} "
            f"{p.valid_from}..{p.valid_until} {'yes' if p.escort else 'no ':<6} "
            f"{'set' if p.pin else '-'}"
        )
    _warn_expiring(acl, cfg)
    return 0


def _cmd_acl_sign(args: argparse.Namespace) -> int:
    import datetime as _dt

    from edged.acl import import_admin_file
    from edged.keys import load_private_key
    from edged.sync.envelope import make_envelope

    state_dir, cfg = _state_and_config(args)
    secret_dir = Path(args.card_secret_dir) if args.card_secret_dir else state_dir
    fp = CardFingerprinter(load_keys(secret_dir).fingerprint_secret)
    acl = import_admin_file(
        Path(args.file), fp, site=cfg.site, version=args.version, areas=set(cfg.areas)
    )
    key = load_private_key(Path(args.key))
    expires = _dt.datetime.now(_dt.UTC) + _dt.timedelta(days=args.expires_days)
    env = make_envelope(acl, key, device=args.device or cfg.device, expires=expires)
    Path(args.out).write_bytes(env)
    os.chmod(args.out, 0o600)
    print(
        f"signed access list version {acl.version} for {cfg.site}/{args.device or cfg.device}"
        f" ({len(acl.people)} people), expires {expires:%Y-%m-%dT%H:%M:%SZ}: {args.out}"
    )
    return 0


def _cmd_acl_publish(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt

    from edged.sync import topics

    payload = Path(args.file).read_bytes()
    doc = json.loads(payload)
    host, _, port = args.broker.rpartition(":")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if args.ca_file:
        c.tls_set(ca_certs=args.ca_file, certfile=args.cert_file, keyfile=args.key_file)
    c.connect(host, int(port))
    c.loop_start()
    try:
        topic = topics.leaf(doc["site"], doc["device"], "acl")
        c.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        c.loop_stop()
        c.disconnect()
    print(f"published (retained) to {topic}")
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    import signal as _signal
    import threading

    from edged.collector import Collector
    from edged.keys import load_private_key
    from edged.log import configure_logging

    configure_logging()
    host, _, port = args.broker.rpartition(":")
    tls = (
        {"ca": args.ca_file, "cert": args.cert_file, "key": args.key_file} if args.ca_file else None
    )
    col = Collector(
        host,
        int(port),
        Path(args.db),
        Path(args.trust),
        load_private_key(Path(args.key)),
        tls=tls,
    )
    stop = threading.Event()
    _signal.signal(_signal.SIGTERM, lambda *_: stop.set())
    _signal.signal(_signal.SIGINT, lambda *_: stop.set())
    col.start()
    stop.wait()
    col.close()
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from edged.config import load_config
    from edged.daemon import Daemon
    from edged.log import configure_logging

    configure_logging()
    cfg = load_config(Path(args.config), state_dir=Path(args.state_dir) if args.state_dir else None)
    sk, _pk, _fp = key_paths(cfg.state_dir)
    if not sk.exists():
        if not args.simulate:
            raise KeyFileError(
                f"{sk}: no device key; create one with: edged keys init --state-dir {cfg.state_dir}"
            )
        init_keys(cfg.state_dir)
    return Daemon(cfg, simulate=args.simulate).run()


def _cmd_sim(args: argparse.Namespace) -> int:
    from edged.control import request

    req: dict[str, object] = {"cmd": args.sim_command}
    for key in ("card", "reader", "kind", "behaviour", "door", "action", "name", "keys"):
        v = getattr(args, key, None)
        if v is not None:
            req[key] = v
    if args.sim_command == "tamper":
        req["active"] = args.state == "on"
    sock = Path(args.state_dir) / "control.sock"
    try:
        resp = request(sock, req)
    except OSError as e:
        print(
            f"edged sim: cannot reach the daemon at {sock} ({e.strerror or e});"
            " is `edged run --simulate` running with this state directory?",
            file=sys.stderr,
        )
        return 2
    if args.json or "state" in resp:
        print(json.dumps(resp, ensure_ascii=False, indent=2))
    elif not resp.get("ok"):
        print(f"error: {resp.get('error')}")
    else:
        for line in format_records(resp.get("records", [])):
            print(line)
        if resp.get("note"):
            print(f"({resp['note']})")
    return 0 if resp.get("ok") else 1


def _cmd_status(args: argparse.Namespace) -> int:
    from edged.control import request

    sock = Path(args.state_dir) / "control.sock"
    try:
        resp = request(sock, {"cmd": "state"})
    except OSError as e:
        print(f"edged status: no daemon answers at {sock} ({e.strerror or e})", file=sys.stderr)
        return 2
    st = resp.get("state", {})
    if args.json:
        print(json.dumps(st, ensure_ascii=False, indent=2))
        return 0
    core = st.get("core", {})
    j = st.get("journal", {})
    print(f"journal head seq {j.get('head_seq')}  access list version {core.get('acl_version')}")
    for area, ids in core.get("occupancy", {}).items():
        print(f"area {area}: {len(ids)} inside {' '.join(ids)}")
    for door, d in core.get("doors", {}).items():
        flags = [k for k in ("held_open_alarm", "forced_alarm") if d.get(k)]
        print(
            f"door {door}: {'closed' if d.get('closed') else 'OPEN'}, "
            f"{'unlocked' if d.get('unlocked') else 'locked'} {' '.join(flags)}".rstrip()
        )
    alarms = []
    if core.get("tamper"):
        alarms.append("tamper")
    alarms += [f"reader {r} lost" for r in core.get("readers_lost", {})]
    alarms += [
        f"cabinets open in {a}: {','.join(c)}" for a, c in core.get("lockcheck_open", {}).items()
    ]
    print("alarms: " + ("; ".join(alarms) if alarms else "none"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the docs and tests)."""
    p = argparse.ArgumentParser(
        prog="edged",
        description="Edge daemon for doors and cabinets of personal-data handling areas.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keys = sub.add_parser("keys", help="create or show the device keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    ki = ksub.add_parser("init", help="create the device signing key and fingerprint secret")
    ki.add_argument("--state-dir", required=True, help="state directory (created 0700)")
    ki.add_argument("--force", action="store_true", help="replace existing keys")
    role = ki.add_mutually_exclusive_group()
    role.add_argument(
        "--admin",
        action="store_true",
        help="an administrator key (signs access lists) instead of a device key",
    )
    role.add_argument(
        "--collector", action="store_true", help="a collector key (signs receipts and commands)"
    )
    ki.set_defaults(handler=_cmd_keys_init)
    ks = ksub.add_parser("show", help="print the public key and key id")
    ks.add_argument("--state-dir", required=True)
    ks.set_defaults(handler=_cmd_keys_show)

    v = sub.add_parser("verify", help="check every record of a journal")
    v.add_argument("--db", required=True, help="journal file (journal.db)")
    v.add_argument("--pubkey", help="device public key (PEM); default: beside the journal")
    v.add_argument("--json", action="store_true", help="machine-readable result")
    v.set_defaults(handler=_cmd_verify)

    c = sub.add_parser("config", help="configuration tools")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    cc = csub.add_parser("check", help="validate a configuration file")
    cc.add_argument("file")
    cc.set_defaults(handler=_cmd_config_check)

    acl = sub.add_parser("acl", help="import or show the access list")
    asub = acl.add_subparsers(dest="acl_command", required=True, metavar="ACTION")
    ai = asub.add_parser(
        "import",
        help="store an administrator's TOML/CSV list (raw ids"
        " and PINs are converted, never stored)",
    )
    ai.add_argument("file")
    ai.add_argument("--config", required=True)
    ai.add_argument("--state-dir")
    ai.add_argument("--version", type=int, help="default: active version + 1")
    ai.set_defaults(handler=_cmd_acl_import)
    ash = asub.add_parser("show", help="people, areas, expiry; warns of rights ending soon")
    ash.add_argument("--config", required=True)
    ash.add_argument("--state-dir")
    ash.set_defaults(handler=_cmd_acl_show)

    asg = asub.add_parser("sign", help="sign an admin list for a device (MQTT distribution)")
    asg.add_argument("file")
    asg.add_argument("--key", required=True, help="admin_ed25519.key")
    asg.add_argument("--config", required=True)
    asg.add_argument("--state-dir")
    asg.add_argument(
        "--card-secret-dir",
        help="directory with the site's card_fingerprint.key (default: state dir)",
    )
    asg.add_argument("--version", type=int, required=True)
    asg.add_argument("--device", help='device id, or "*" for every device of the site')
    asg.add_argument("--expires-days", type=int, default=7)
    asg.add_argument("--out", required=True)
    asg.set_defaults(handler=_cmd_acl_sign)
    apb = asub.add_parser("publish", help="publish a signed list (retained) to its device")
    apb.add_argument("file")
    apb.add_argument("--broker", required=True, help="HOST:PORT")
    apb.add_argument("--ca-file")
    apb.add_argument("--cert-file")
    apb.add_argument("--key-file")
    apb.set_defaults(handler=_cmd_acl_publish)

    col = sub.add_parser("collect", help="run the reference collector (central side)")
    col.add_argument("--broker", required=True, help="HOST:PORT")
    col.add_argument("--db", required=True, help="central.db")
    col.add_argument("--trust", required=True, help="directory of DEVICE.pub files")
    col.add_argument("--key", required=True, help="collector_ed25519.key")
    col.add_argument("--ca-file")
    col.add_argument("--cert-file")
    col.add_argument("--key-file")
    col.set_defaults(handler=_cmd_collect)

    r = sub.add_parser("run", help="run the daemon")
    r.add_argument("--config", required=True, help="edged.toml")
    r.add_argument("--state-dir", help="override state_dir from the config")
    r.add_argument(
        "--simulate",
        action="store_true",
        help="simulated hardware: pcscd+vpcd virtual cards, MockFactory GPIO,"
        " and a control socket for `edged sim`",
    )
    r.set_defaults(handler=_cmd_run)

    stp = sub.add_parser("status", help="occupancy, doors, alarms and journal head")
    stp.add_argument("--state-dir", default=os.environ.get("EDGED_STATE_DIR", "/var/lib/edged"))
    stp.add_argument("--json", action="store_true")
    stp.set_defaults(handler=_cmd_status)

    sim = sub.add_parser("sim", help="drive a --simulate daemon's hardware")
    sim.add_argument("--state-dir", default=os.environ.get("EDGED_STATE_DIR", "/var/lib/edged"))
    sim.add_argument("--json", action="store_true", help="print the full answer as JSON")
    ssub = sim.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    t = ssub.add_parser("tap", help="present a card and take it away")
    t.add_argument("card", help="card identifier in hex (FeliCa IDm 8 bytes, MIFARE UID 4/7)")
    t.add_argument("--reader", default="entry")
    t.add_argument("--kind", choices=["felica", "mifare", "mifare-ul", "iso14443b"])
    t.add_argument("--behaviour", choices=["ok", "error", "garbage", "long", "empty"])
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
    rd = ssub.add_parser("reader", help="unplug or plug a reader")
    rd.add_argument("reader")
    rd.add_argument("action", choices=["unplug", "plug"])
    ssub.add_parser("state", help="relay, LEDs, buzzer, doors and alarms as JSON")
    sim.set_defaults(handler=_cmd_sim)

    rp = sub.add_parser("report", help="the entry/exit ledger (入退室管理表) for a period")
    rp.add_argument("--db", required=True)
    rp.add_argument("--from", dest="from_date", required=True, help="YYYY-MM-DD")
    rp.add_argument("--to", dest="to_date", required=True, help="YYYY-MM-DD")
    rp.add_argument("--format", choices=["csv", "html"], default="html")
    rp.add_argument("--lang", choices=["ja", "en"], default="ja")
    rp.add_argument("--tz", default="Asia/Tokyo", help="local time of the ledger")
    rp.add_argument("--device", default="", help="device name printed on the report")
    rp.add_argument("--pubkey", help="device public key; default: beside the journal")
    rp.add_argument("--out", help="file to write (default: standard output)")
    rp.set_defaults(handler=_cmd_report)

    dr_ = sub.add_parser("doctor", help="check the installation, with a fix for each problem")
    dr_.add_argument("--config", default="/etc/edged/edged.toml")
    dr_.add_argument("--state-dir")
    dr_.set_defaults(handler=_cmd_doctor)

    d = sub.add_parser("demo", help="run the demonstration on simulated hardware")
    d.add_argument("--state-dir", required=True, help="where keys and journal.db are kept")
    d.add_argument("--fast", action="store_true", help="no pauses")
    d.add_argument("--config", help="configuration (default: the repository's example)")
    d.set_defaults(handler=_cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edged`` console script."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except EdgedError as e:
        print(f"edged: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
