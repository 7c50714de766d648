"""What the command-line modules share: the state directory and configuration of a
command, and one set of broker options turned into one typed value."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edged.protocol.mqtt import Broker, Tls


def state_and_config(args: argparse.Namespace) -> tuple[Path, Any]:
    from edged.device.config import load_config

    cfg = load_config(Path(args.config), state_dir=Path(args.state_dir) if args.state_dir else None)
    return cfg.state_dir, cfg


def add_broker_args(p: argparse.ArgumentParser) -> None:
    """The broker options, the same for every command that talks to it."""
    p.add_argument("--broker", required=True, help="HOST:PORT")
    p.add_argument("--ca-file", help="CA certificate of the broker: TLS")
    p.add_argument("--cert-file", help="client certificate (mutual TLS)")
    p.add_argument("--key-file", help="client key (mutual TLS)")
    p.add_argument("--username")
    p.add_argument("--password-file")


def broker_from_args(args: argparse.Namespace) -> Broker:
    """The typed broker value of :func:`add_broker_args`' options."""
    path = lambda v: Path(v) if v else None  # noqa: E731
    tls = None
    if args.ca_file:
        tls = Tls(Path(args.ca_file), path(args.cert_file), path(args.key_file))
    return Broker.parse(
        args.broker, tls=tls, username=args.username, password_file=path(args.password_file)
    )
