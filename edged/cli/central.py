"""Commands for the central side: the collector."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edged.cli.common import add_broker_args, broker_from_args


def _cmd_collect(args: argparse.Namespace) -> int:
    import signal as _signal
    import threading

    from edged.central.collector import Collector
    from edged.central.notify import load_notify
    from edged.central.watch import Watch
    from edged.log import configure_logging
    from edged.protocol.keys import load_private_key

    configure_logging()
    if not 0.1 <= args.report_every <= 86400:
        from edged.errors import ConfigError

        raise ConfigError(f"collect --report-every: 0.1 to 86400 s, got {args.report_every:g}")
    col = Collector(
        broker_from_args(args),
        args.store,
        Path(args.trust),
        load_private_key(Path(args.key)),
        share=args.share,
        sites=tuple(s for s in (args.sites or "").split(",") if s),
        watch=Watch(
            silent=args.silent_after,
            stall=args.stall_after,
            clock=args.unsynced_after,
            acl=args.acl_after,
            retention_days=args.retention_days,
        ),
        notify=load_notify(Path(args.notify)) if args.notify else None,
    )
    stop = threading.Event()
    _signal.signal(_signal.SIGTERM, lambda *_: stop.set())
    _signal.signal(_signal.SIGINT, lambda *_: stop.set())
    col.start()
    # A line of progress now and then (only when it moved): what this collector stored
    # is known even if it is killed, when no collector_stopped line is written.
    from edged.log import get_logger

    log, last = get_logger("edged.collect"), (0, 0)
    while not stop.wait(args.report_every):
        now = (col.stored, col.parked)
        if now != last:
            log.info("collector_progress", stored=now[0], parked=now[1])
            last = now
    col.close()
    return 0


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _cmd_retention(args: argparse.Namespace) -> int:
    import time

    from edged.central.store import open_store
    from edged.errors import ConfigError
    from edged.protocol.records import format_ts

    if args.keep_days <= 0:
        raise ConfigError("retention --keep-days: must be more than 0")
    store = open_store(args.store)
    try:
        now = int(time.time() * 1000)
        store.prepare_months(now)
        cutoff = format_ts(now - int(args.keep_days * 86_400_000))
        removed = store.apply_retention(cutoff, format_ts(now))
    finally:
        store.close()
    for r in removed:
        print(
            f"{r['site']}/{r['device']}: removed seqs {r['first_seq']}..{r['last_seq']}"
            f" ({r['removed']} records, older than {cutoff})"
        )
    print(f"retention: {sum(r['removed'] for r in removed)} records removed before {cutoff}")
    return 0


def _cmd_console(args: argparse.Namespace) -> int:
    if getattr(args, "console_command", None) == "user":
        return _cmd_console_user(args)
    try:
        import uvicorn

        from edged.central.console.app import create_app
    except ImportError as e:
        from edged.errors import ConfigError

        raise ConfigError(
            f"console: {e.name} is not installed (pip install edged[central])"
        ) from None
    from edged.errors import ConfigError

    host, _, port_s = args.listen.rpartition(":")
    if not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ConfigError(f"console --listen {args.listen!r}: expected HOST:PORT")
    host, port = host.strip("[]"), int(port_s)
    if not _loopback(host) and not args.cert_file and not args.trusted_proxy:
        # The session cookie is Secure: over plain HTTP a browser drops it and every login
        # would fail with "bad CSRF token". Said now, not at the first login.
        raise ConfigError(
            f"console --listen {args.listen}: plain HTTP on a non-loopback address; serve"
            " TLS (--cert-file/--key-file) or listen on 127.0.0.1 behind a TLS reverse"
            " proxy (--trusted-proxy ADDR)"
        )
    from edged.protocol.keys import load_public_key
    broker = broker_from_args(args, "broker-") if args.broker else None
    admin = load_public_key(Path(args.admin_pubkey)) if args.admin_pubkey else None
    from edged.central.console.guard import parse_networks

    try:
        proxies = parse_networks(args.trusted_proxy or ())
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not 0.1 <= args.idle_minutes <= 24 * 60:
        raise ConfigError(f"console --idle-minutes: 0.1 to 1440, got {args.idle_minutes:g}")
    app = create_app(
        args.store, tz=args.tz, broker=broker, admin_key=admin, trusted_proxies=proxies,
        idle_ms=int(args.idle_minutes * 60_000),
    )  # fmt: skip
    ssl = {"ssl_certfile": args.cert_file, "ssl_keyfile": args.key_file} if args.cert_file else {}
    print(f"console on http{'s' if ssl else ''}://{host}:{port}/", flush=True)
    # Open live-alarm streams would hold a stop for ever: they get 5 s to end.
    # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1 by default;
    # the app believes it only from --trusted-proxy (guard.py).
    uvicorn.run(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5,
        proxy_headers=False, **ssl,
    )  # fmt: skip
    return 0


def _cmd_console_user(args: argparse.Namespace) -> int:
    import getpass
    import sys
    import time

    from edged.central.console.auth import ROLES, hash_password
    from edged.central.store import open_store
    from edged.errors import ConfigError
    from edged.protocol.records import format_ts

    if args.user_command in ("remove", "role"):
        return _console_user_change(args)
    if args.role not in ROLES:
        raise ConfigError(f"console user add --role: one of {', '.join(ROLES)}")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
    if len(password) < 12:
        raise ConfigError("console user add: the password needs 12 characters or more")
    store = open_store(args.store)
    try:
        now = format_ts(int(time.time() * 1000))
        store.accounts.add_user(args.name, args.role, hash_password(password), now)
        detail = json.dumps({"name": args.name, "role": args.role}, ensure_ascii=False)
        store.accounts.audit(now, "(command line)", "user_add", detail)
    finally:
        store.close()
    print(f"console user {args.name} ({args.role}) saved")
    return 0


def _console_user_change(args: argparse.Namespace) -> int:
    """``console user remove NAME`` and ``console user role NAME --role R``: recorded in
    the audit trail; sessions and open alarm streams of the user end or change at once."""
    import time

    from edged.central.console.auth import ROLES
    from edged.central.store import open_store
    from edged.errors import ConfigError
    from edged.protocol.records import format_ts

    remove = args.user_command == "remove"
    if not remove and args.role not in ROLES:
        raise ConfigError(f"console user role --role: one of {', '.join(ROLES)}")
    store = open_store(args.store)
    try:
        done = (
            store.accounts.remove_user(args.name)
            if remove
            else store.accounts.set_role(args.name, args.role)
        )
        store.commit()
        if not done:
            raise ConfigError(f"console user {args.user_command}: no user {args.name!r}")
        now = format_ts(int(time.time() * 1000))
        detail = {"name": args.name} | ({} if remove else {"role": args.role})
        action = "user_remove" if remove else "user_role"
        store.accounts.audit(now, "(command line)", action, json.dumps(detail, ensure_ascii=False))
    finally:
        store.close()
    print(
        f"console user {args.name} removed; their sessions are ended"
        if remove
        else f"console user {args.name} is now {args.role}"
    )
    return 0


def register(sub: Any) -> None:
    """Add this audience's commands to the ``edged`` parser."""
    _register_collect(sub)
    _register_retention(sub)
    _register_console(sub)


def _register_collect(sub: Any) -> None:
    col = sub.add_parser("collect", help="run the reference collector (central side)")
    add_broker_args(col)
    col.add_argument(
        "--store",
        "--db",
        dest="store",
        required=True,
        metavar="FILE.db|postgresql://…",
        help="the central store: a SQLite file (one office), or a PostgreSQL URL (several"
        " collectors, many sites)",
    )
    col.add_argument(
        "--share",
        metavar="GROUP",
        default=None,
        help="take devices' messages through the MQTT shared subscription $share/GROUP, with"
        " the other collectors of GROUP on the same store (default: none, every message)",
    )
    col.add_argument(
        "--sites",
        metavar="A,B",
        default=None,
        help="only these sites' topics: a shard of a large company, so that each device's"
        " records stay with one collector group (default: every site)",
    )
    col.add_argument(
        "--silent-after",
        type=float,
        default=180.0,
        metavar="S",
        help="alarm when a device sends no heartbeat for S seconds (default: 180)",
    )
    col.add_argument(
        "--stall-after",
        type=float,
        default=300.0,
        metavar="S",
        help="alarm when a device's backlog gets no receipt for S seconds (default: 300)",
    )
    col.add_argument(
        "--unsynced-after",
        type=float,
        default=900.0,
        metavar="S",
        help="alarm when a device's clock stays unsynchronised for S seconds (default: 900)",
    )
    col.add_argument(
        "--acl-after",
        type=float,
        default=600.0,
        metavar="S",
        help="alarm when a device has not applied a published access list after S seconds"
        " (default: 600)",
    )
    col.add_argument(
        "--notify", metavar="FILE",
        help="notify.toml (0600): which alarms go to whom, by e-mail, Teams, Slack, LINE,"
        " ntfy or webhook (docs/central.md; default: none, the console and MQTT only)",
    )  # fmt: skip
    col.add_argument(
        "--report-every", type=float, default=60.0, metavar="S",
        help="log a line of progress (records stored, parked) every S seconds while it"
        " changes (default: 60)",
    )  # fmt: skip
    col.add_argument("--trust", required=True, help="directory of SITE/DEVICE.pub files")
    col.add_argument("--key", required=True, help="collector_ed25519.key")
    col.add_argument(
        "--retention-days",
        type=float,
        default=0.0,
        metavar="D",
        help="remove records older than D days, daily, logged per device (default: 0, keep"
        " for ever; the rules ask for a set keeping period: choose it)",
    )
    col.set_defaults(handler=_cmd_collect)


def _register_retention(sub: Any) -> None:
    rt = sub.add_parser(
        "retention", help="remove central records past their keeping period, once (cron)"
    )
    rt.add_argument(
        "--store", required=True, metavar="FILE.db|postgresql://…", help="the central store"
    )
    rt.add_argument(
        "--keep-days",
        type=float,
        required=True,
        metavar="D",
        help="keep records this many days; older ones are removed and logged per device",
    )
    rt.set_defaults(handler=_cmd_retention)


def _register_console(sub: Any) -> None:
    con = sub.add_parser("console", help="the web console on the central store")
    con.add_argument(
        "--store", required=True, metavar="FILE.db|postgresql://…", help="the central store"
    )
    con.add_argument(
        "--listen", default="127.0.0.1:8080", help="HOST:PORT (default: 127.0.0.1:8080, loopback)"
    )
    con.add_argument(
        "--tz", default="Asia/Tokyo", help="the sites' time zone (default: Asia/Tokyo)"
    )
    con.add_argument("--cert-file", help="TLS certificate (default: none; or a reverse proxy)")
    con.add_argument("--key-file", help="TLS key, with --cert-file")
    con.add_argument(
        "--trusted-proxy", action="append", metavar="ADDR[/BITS]",
        help="a reverse proxy whose X-Forwarded-For names the client (repeatable; default:"
        " none, every peer is the client)",
    )  # fmt: skip
    con.add_argument(
        "--idle-minutes", type=float, default=30.0,
        help="a session unused this long ends (default: 30)",
    )  # fmt: skip
    add_broker_args(
        con, prefix="broker-", required=False,
        help="HOST:PORT where access lists are published (default: none, no publishing)",
    )  # fmt: skip
    con.add_argument(
        "--admin-pubkey",
        help="admin_ed25519.pub: uploaded lists must be signed by its key (default: none)",
    )
    csub = con.add_subparsers(dest="console_command", metavar="ACTION")
    cu = csub.add_parser("user", help="manage console users")
    cusub = cu.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    ua = cusub.add_parser("add", help="add a user, or set a user's role and password")
    ua.add_argument("name", help="the user's name")
    ua.add_argument("--role", required=True, help="viewer, auditor or admin")
    ua.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    ur = cusub.add_parser("remove", help="remove a user; their sessions end at once")
    ur.add_argument("name", help="the user's name")
    uo = cusub.add_parser("role", help="give a user another role (their password stays)")
    uo.add_argument("name", help="the user's name")
    uo.add_argument("--role", required=True, help="viewer, auditor or admin")
    con.set_defaults(handler=_cmd_console)
