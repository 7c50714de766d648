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


def add_broker_args(
    p: argparse.ArgumentParser, *, prefix: str = "", required: bool = True, help: str = "HOST:PORT"
) -> None:
    """The broker options, the same for every command that talks to it. ``prefix``
    ("broker-") where the command has TLS options of its own (the console)."""
    p.add_argument("--broker", required=required, help=help)
    p.add_argument(f"--{prefix}ca-file", help="CA certificate of the broker: TLS")
    p.add_argument(f"--{prefix}cert-file", help="client certificate (mutual TLS)")
    p.add_argument(f"--{prefix}key-file", help="client key (mutual TLS)")
    p.add_argument(f"--{prefix}username", help="broker login")
    p.add_argument(f"--{prefix}password-file", help="the broker login's password, in a file")


def broker_from_args(args: argparse.Namespace, prefix: str = "") -> Broker:
    """The typed broker value of :func:`add_broker_args`' options."""
    opt = lambda name: getattr(args, (prefix + name).replace("-", "_"))  # noqa: E731
    path = lambda v: Path(v) if v else None  # noqa: E731
    tls = None
    if opt("ca-file"):
        tls = Tls(Path(opt("ca-file")), path(opt("cert-file")), path(opt("key-file")))
    return Broker.parse(
        args.broker, tls=tls, username=opt("username"), password_file=path(opt("password-file"))
    )
