"""Commands for the central side: the collector."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edged.cli.common import add_broker_args, broker_from_args


def _cmd_collect(args: argparse.Namespace) -> int:
    import signal as _signal
    import threading

    from edged.central.collector import Collector, Watch
    from edged.log import configure_logging
    from edged.protocol.keys import load_private_key

    configure_logging()
    b = broker_from_args(args)
    col = Collector(
        b.host,
        b.port,
        args.store,
        Path(args.trust),
        load_private_key(Path(args.key)),
        tls=b.tls,
        share=args.share,
        sites=tuple(s for s in (args.sites or "").split(",") if s),
        watch=Watch(
            silent=args.silent_after,
            stall=args.stall_after,
            clock=args.unsynced_after,
            acl=args.acl_after,
            retention_days=args.retention_days,
        ),
    )
    stop = threading.Event()
    _signal.signal(_signal.SIGTERM, lambda *_: stop.set())
    _signal.signal(_signal.SIGINT, lambda *_: stop.set())
    col.start()
    stop.wait()
    col.close()
    return 0


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


def register(sub: Any) -> None:
    """Add this audience's commands to the ``edged`` parser."""
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
