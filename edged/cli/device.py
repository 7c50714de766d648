"""Commands for the door controller and its auditor: keys, run, status, verify, report,
doctor, config check, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from edged.device.keys import has_identity, init_keys, key_paths, load_keys
from edged.device.paths import PUBLIC_KEY_FILE, StatePaths
from edged.errors import ConfigError, JournalCorruptError, JournalError, KeyFileError
from edged.protocol.keys import key_id_of, load_public_key, public_key_pem


def _cmd_keys_init(args: argparse.Namespace) -> int:
    if args.card_master:
        from edged.device.keys import init_card_master

        path = init_card_master(Path(args.state_dir), force=args.force)
        print(f"created the site's card master key {path} (0600): copy it, 0600, to every")
        print("door of the site and to the enrolment station; never into an access list")
        return 0
    role = "admin" if args.admin else "collector" if args.collector else None
    if role is not None:
        from edged.protocol.keys import init_role_key

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


def _journal_file(db: Path) -> Path:
    """The journal the command was pointed at, or a one-line error saying it is not there
    (before: "public key file not found", from the key beside a missing journal)."""
    if not db.is_file():
        raise JournalCorruptError(f"{db}: no such file: no journal there (--db names a journal.db)")
    return db


def _cmd_prove(args: argparse.Namespace) -> int:
    from edged.device.journal.proofs import prove_consistency, prove_inclusion, with_verifier

    db = Path(args.db)
    _journal_file(db)
    if (args.seq is None) == (args.consistency is None):
        raise ConfigError("prove: give --seq N (inclusion) or --consistency OLD NEW")
    pub = load_public_key(Path(args.pubkey) if args.pubkey else db.parent / PUBLIC_KEY_FILE)
    try:
        if args.seq is not None:
            doc = prove_inclusion(db, args.seq, args.size)
        else:
            old, new = args.consistency
            if not 0 < old <= new:
                raise ConfigError(f"--consistency {old} {new}: need 0 < OLD <= NEW")
            doc = prove_consistency(db, old, new)
    except JournalError as e:
        raise ConfigError(str(e)) from None
    text = json.dumps(with_verifier(doc, pub), ensure_ascii=False, indent=1) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_verify_proof(args: argparse.Namespace) -> int:
    from edged.device.journal.proofs import check_proof
    from edged.protocol.note import NoteError
    from edged.protocol.tlog import ProofError

    if not args.pubkey:
        raise ConfigError("verify --proof: --pubkey DEVICE.pub is required (the enrolled key)")
    pub = load_public_key(Path(args.pubkey))
    try:
        doc = json.loads(Path(args.proof).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{args.proof}: not a proof document ({e})") from None
    try:
        print(check_proof(doc, pub))
    except (ProofError, NoteError, ValueError, KeyError, TypeError) as e:
        print(f"FAIL: {e}")
        return 1
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from edged.device.journal import verify_journal

    if args.proof is not None:
        return _cmd_verify_proof(args)
    if args.db is None:
        raise ConfigError("verify: give --db JOURNAL or --proof FILE")
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
        _journal_file(db)
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
    import zoneinfo

    from edged.device.journal import verify_journal
    from edged.device.report import build_ledger, to_csv, to_html

    try:
        tz = zoneinfo.ZoneInfo(args.tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--tz: no such time zone: {args.tz!r}") from None
    # The day is the ledger's local day, not the host's (a UTC host is 9 hours behind Tokyo).
    today = _dt.datetime.now(tz).date().isoformat()
    try:
        start = _dt.date.fromisoformat(args.from_date or today)
        end = _dt.date.fromisoformat(args.to_date or args.from_date or today)
    except ValueError as e:
        raise ConfigError(f"--from/--to: {e} (use YYYY-MM-DD)") from None
    if end < start:
        raise ConfigError(f"--from {start} is after --to {end}: the period would be empty")
    # The format follows the output file's name unless given: ledger.csv is CSV.
    fmt = args.format or ("csv" if args.out and args.out.lower().endswith(".csv") else "html")
    if (args.db is None) == (args.store is None):
        raise ConfigError("report: give --db JOURNAL (one door) or --store STORE --site SITE")
    if args.store is not None:
        led, result, label = _central_ledger(args, start, end)
    else:
        db = Path(args.db)
        pub_path = Path(args.pubkey) if args.pubkey else db.parent / PUBLIC_KEY_FILE
        try:
            _journal_file(db)
            pub = load_public_key(pub_path)
            result = verify_journal(db, {key_id_of(pub): pub})
        except (JournalCorruptError, KeyFileError) as e:
            print(f"ERROR: {e}", file=sys.stderr)
            return 2
        led, label = build_ledger(db, start, end, args.tz, result), args.device
    now = _dt.datetime.now(tz).strftime("%Y-%m-%d %H:%M %Z")
    if args.reviewed_by:
        _record_review(args, start, end, led)
    text = (
        to_csv(led, lang=args.lang)
        if fmt == "csv"
        else to_html(led, lang=args.lang, device=label, generated=now, titles=_titles(args))
    )
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(
            f"wrote {args.out}: {len(led.visits)} visits, {len(led.lockchecks)} lock checks,"
            f" {len(led.denied)} denials, {len(led.alarms)} alarms; records "
            f"{'intact' if result.ok else 'NOT intact'}"
        )
    else:
        sys.stdout.write(text)
    return 0 if result.ok else 1


def _titles(args: argparse.Namespace) -> dict[str, str]:
    """The areas' titles from ``--config``, printed instead of their names."""
    from edged.device.config import load_config

    if not args.config:
        return {}
    cfg = load_config(Path(args.config))
    return {name: a.title for name, a in cfg.areas.items()}


def _record_review(args: argparse.Namespace, start: Any, end: Any, led: Any) -> None:
    """R20: the review of this period is itself recorded, signed, and printed on the
    ledger: in the door's journal (by its running daemon, the journal's one writer), or
    in the central store's audit trail."""
    import datetime as _dt
    import json as _json

    if not args.method:
        raise ConfigError("--reviewed-by: say how the records were checked (--method)")
    review = {
        "from": str(start),
        "to": str(end),
        "reviewer": args.reviewed_by[:64],
        "method": args.method[:500],
        "result": (args.result or "no findings")[:500],
    }
    if args.store is not None:
        from edged.central.store import open_store
        from edged.protocol.records import format_ts

        now = format_ts(int(_dt.datetime.now(_dt.UTC).timestamp() * 1000))
        store = open_store(args.store)
        try:
            detail = {"site": args.site, "from": review["from"], "to": review["to"],
                      "method": review["method"], "findings": review["result"]}  # fmt: skip
            store.accounts.audit(now, review["reviewer"], "review_signoff",
                        _json.dumps(detail, ensure_ascii=False, sort_keys=True))  # fmt: skip
            store.commit()
        finally:
            store.close()
        led.reviews.append({"time": now, **review})
        return
    from edged.device.control import request

    sock = StatePaths(Path(args.db).parent).control_socket
    if not sock.exists():
        raise ConfigError(
            f"--reviewed-by: no running daemon at {sock.parent}: the review is a record of"
            " the door's journal, written by its daemon (its one writer); start it and run"
            " this again"
        )
    resp = request(sock, {"cmd": "review", **review})
    if not resp.get("ok"):
        raise ConfigError(f"--reviewed-by: {resp.get('error')}")
    for r in resp.get("records", []):
        led.reviews.append({"time": str(r.get("ts")), **review})
    print(f"recorded ledger.reviewed (seq {resp['records'][0]['seq']}) in {args.db}")


def _central_ledger(args: argparse.Namespace, start: Any, end: Any) -> tuple[Any, Any, str]:
    """The ledger across doors from the central store (``--store``)."""
    from edged.central.ledger import central_ledger
    from edged.central.store import open_store
    from edged.central.trust import TrustStore
    from edged.ledger import Scope

    if not args.site:
        raise ConfigError("report --store: --site is required")
    store = open_store(args.store)
    try:
        led = central_ledger(
            store,
            args.site,
            start,
            end,
            args.tz,
            scope=Scope(args.area, args.door, args.person),
            trust=TrustStore(Path(args.trust)) if args.trust else None,
        )
    finally:
        store.close()
    where = " ".join(
        f"{k} {v}"
        for k, v in (("area", args.area), ("door", args.door), ("person", args.person))
        if v
    )
    label = args.device or f"site {args.site}" + (f", {where}" if where else "")
    assert led.verify is not None
    return led, led.verify, label


def _cmd_doctor(args: argparse.Namespace) -> int:
    from edged.device.doctor import run_doctor

    code, results = run_doctor(
        Path(args.config),
        Path(args.state_dir) if args.state_dir else None,
        simulate=args.simulate,
    )
    for r in results:
        print(r.line())
    return code


def _cmd_demo(args: argparse.Namespace) -> int:
    from edged.simulators.demo import run_demo

    return run_demo(
        Path(args.state_dir), fast=args.fast, config=Path(args.config) if args.config else None
    )


def _cmd_config_check(args: argparse.Namespace) -> int:
    from edged.device.config import load_config

    cfg = load_config(Path(args.file))
    print(
        f"{args.file}: OK: site {cfg.site}, device {cfg.device}, {len(cfg.areas)} area(s),"
        f" {len(cfg.doors)} door(s), {len(cfg.cabinets)} cabinet(s), {len(cfg.readers)}"
        " reader(s)"
    )
    return 0


def _cmd_config_options(args: argparse.Namespace) -> int:
    from edged.device.config import option_reference

    print(option_reference(), end="")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from edged.device.config import load_config
    from edged.device.daemon import Daemon
    from edged.log import configure_logging

    configure_logging()
    cfg = load_config(Path(args.config), state_dir=Path(args.state_dir) if args.state_dir else None)
    if not has_identity(cfg.state_dir):
        sk, _pk, _fp = key_paths(cfg.state_dir)
        if not args.simulate:
            raise KeyFileError(
                f"{sk}: no device key; create one with: edged keys init --state-dir {cfg.state_dir}"
            )
        init_keys(cfg.state_dir)
    return Daemon(cfg, simulate=args.simulate).run()


def _cmd_status(args: argparse.Namespace) -> int:
    from edged.device.control import request

    sock = StatePaths(Path(args.state_dir)).control_socket
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


def register(sub: Any) -> None:
    """Add this audience's commands to the ``edged`` parser."""
    _register_keys(sub)
    _register_verify(sub)
    _register_config(sub)
    _register_run(sub)
    _register_report(sub)
    _register_doctor(sub)


def _register_keys(sub: Any) -> None:
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
    role.add_argument(
        "--card-master",
        action="store_true",
        help="the site's DESFire master key (card_master.key, 0600): the same file at"
        " every door of the site and at the enrolment station",
    )
    ki.set_defaults(handler=_cmd_keys_init)
    ks = ksub.add_parser("show", help="print the public key and key id")
    ks.add_argument("--state-dir", required=True)
    ks.set_defaults(handler=_cmd_keys_show)


def _register_verify(sub: Any) -> None:
    v = sub.add_parser("verify", help="check every record of a journal, or a proof")
    v.add_argument("--db", help="journal file (journal.db)")
    v.add_argument("--proof", help="a proof from edged prove: check it (no journal needed)")
    v.add_argument("--pubkey", help="device public key (PEM); default: beside the journal")
    v.add_argument("--json", action="store_true", help="machine-readable result")
    v.set_defaults(handler=_cmd_verify)
    pv = sub.add_parser("prove", help="a Merkle proof against a signed checkpoint (C2SP, RFC 9162)")
    pv.add_argument("--db", required=True, help="journal file (journal.db)")
    pv.add_argument("--seq", type=int, help="the record to prove included")
    pv.add_argument("--size", type=int, help="with --seq: the checkpoint's tree size")
    pv.add_argument(
        "--consistency", nargs=2, type=int, metavar=("OLD", "NEW"),
        help="prove the log of NEW records extends the log of OLD (checkpoint sizes)",
    )  # fmt: skip
    pv.add_argument("--pubkey", help="device public key (PEM); default: beside the journal")
    pv.add_argument("--out", help="file to write (default: standard output)")
    pv.set_defaults(handler=_cmd_prove)


def _register_config(sub: Any) -> None:
    c = sub.add_parser("config", help="configuration tools")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    cc = csub.add_parser("check", help="validate a configuration file")
    cc.add_argument("file")
    cc.set_defaults(handler=_cmd_config_check)
    co = csub.add_parser("options", help="print the reference of every declared option")
    co.set_defaults(handler=_cmd_config_options)


def _register_run(sub: Any) -> None:
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


def _register_report(sub: Any) -> None:
    rp = sub.add_parser("report", help="the entry/exit ledger (入退室管理表) for a period")
    rp.add_argument("--db", help="one door's journal.db")
    rp.add_argument(
        "--store",
        help="the central store (FILE.db or postgresql://…): the ledger across every door",
    )
    rp.add_argument("--site", help="with --store: the site")
    rp.add_argument("--area", help="with --store: only this area (default: all)")
    rp.add_argument("--door", help="with --store: only this door (default: all)")
    rp.add_argument("--person", help="with --store: only this person's id (default: all)")
    rp.add_argument(
        "--trust",
        help="with --store: SITE/DEVICE.pub directory: verify every signature again"
        " (default: hashes and chain links only)",
    )
    rp.add_argument("--from", dest="from_date", help="YYYY-MM-DD (default: today in --tz)")
    rp.add_argument("--to", dest="to_date", help="YYYY-MM-DD (default: --from)")
    rp.add_argument(
        "--format",
        choices=["csv", "html"],
        help="default: csv for an --out ending in .csv, else html",
    )
    rp.add_argument("--lang", choices=["ja", "en"], default="ja")
    rp.add_argument("--tz", default="Asia/Tokyo", help="local time of the ledger")
    rp.add_argument(
        "--device", default="", help="name printed on the report (default: none, or the site)"
    )
    rp.add_argument("--pubkey", help="device public key; default: beside the journal")
    rp.add_argument("--config", help="the device's config: areas printed by their titles")
    rp.add_argument(
        "--reviewed-by",
        help="R20: record that NAME reviewed this period's records (a signed"
        " ledger.reviewed record, or the central audit trail with --store)",
    )
    rp.add_argument("--method", help="with --reviewed-by: how the records were checked")
    rp.add_argument("--result", help="with --reviewed-by: the findings (default: no findings)")
    rp.add_argument("--out", help="file to write (default: standard output)")
    rp.set_defaults(handler=_cmd_report)


def _register_doctor(sub: Any) -> None:
    dr_ = sub.add_parser("doctor", help="check the installation, with a fix for each problem")
    dr_.add_argument("--config", default="/etc/edged/edged.toml")
    dr_.add_argument("--state-dir")
    dr_.add_argument(
        "--simulate",
        action="store_true",
        help="check a simulated rig (MockFactory GPIO, virtual readers) instead of hardware",
    )
    dr_.set_defaults(handler=_cmd_doctor)
    d = sub.add_parser("demo", help="run the demonstration on simulated hardware")
    d.add_argument("--state-dir", required=True, help="where keys and journal.db are kept")
    d.add_argument("--fast", action="store_true", help="no pauses")
    d.add_argument("--config", help="configuration (default: the repository's example)")
    d.set_defaults(handler=_cmd_demo)
