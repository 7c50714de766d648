"""Commands for the central side: the collector."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edged.cli.common import add_broker_args, broker_from_args


def _cmd_collect(args: argparse.Namespace) -> int:
    import signal as _signal
    import threading

    from edged.central.collector import Collector
    from edged.log import configure_logging
    from edged.protocol.keys import load_private_key

    configure_logging()
    b = broker_from_args(args)
    col = Collector(
        b.host,
        b.port,
        Path(args.db),
        Path(args.trust),
        load_private_key(Path(args.key)),
        tls=b.tls,
    )
    stop = threading.Event()
    _signal.signal(_signal.SIGTERM, lambda *_: stop.set())
    _signal.signal(_signal.SIGINT, lambda *_: stop.set())
    col.start()
    stop.wait()
    col.close()
    return 0


def register(sub: Any) -> None:
    """Add this audience's commands to the ``edged`` parser."""
    col = sub.add_parser("collect", help="run the reference collector (central side)")
    add_broker_args(col)
    col.add_argument("--db", required=True, help="central.db")
    col.add_argument("--trust", required=True, help="directory of SITE/DEVICE.pub files")
    col.add_argument("--key", required=True, help="collector_ed25519.key")
    col.set_defaults(handler=_cmd_collect)
