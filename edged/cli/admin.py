"""Commands for the administrator: import, show, sign and publish access lists."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from edged.cli.common import add_broker_args, broker_from_args, state_and_config
from edged.device.keys import load_keys
from edged.device.paths import StatePaths
from edged.errors import ConfigError
from edged.protocol.privacy import CardFingerprinter


def _cmd_acl_import(args: argparse.Namespace) -> int:
    import signal as _signal

    from edged.device.acl import import_admin_file, load_active, save_active

    state_dir, cfg = state_and_config(args)
    keys = load_keys(state_dir)
    fp = CardFingerprinter(keys.fingerprint_secret)
    current = load_active(state_dir, set(cfg.areas))
    version = args.version or ((current.version + 1) if current else 1)
    if current is not None and version <= current.version:
        raise ConfigError(
            f"--version {version}: must be newer than the active list's version {current.version}"
        )
    acl = import_admin_file(
        Path(args.file),
        fp,
        site=cfg.site,
        version=version,
        areas=set(cfg.areas),
        cabinets=set(cfg.cabinets),
        fmt=args.format,
    )
    path = save_active(state_dir, acl)
    print(
        f"stored access list version {acl.version} ({len(acl.people)} people) in {path};"
        f" sha256 {acl.sha256[:16]}; card ids and PINs were not stored"
    )
    pid_file = StatePaths(state_dir).pid
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
    from edged.device.acl import load_active

    state_dir, cfg = state_and_config(args)
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

    from edged.device.acl import import_admin_file
    from edged.device.envelope import make_envelope
    from edged.protocol.keys import load_private_key

    state_dir, cfg = state_and_config(args)
    secret_dir = Path(args.card_secret_dir) if args.card_secret_dir else state_dir
    fp = CardFingerprinter(load_keys(secret_dir).fingerprint_secret)
    acl = import_admin_file(
        Path(args.file),
        fp,
        site=cfg.site,
        version=args.version,
        areas=set(cfg.areas),
        cabinets=set(cfg.cabinets),
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
    from edged.protocol import topics
    from edged.protocol.mqtt import publish_confirmed

    payload = Path(args.file).read_bytes()
    try:
        doc = json.loads(payload)
        site, device = doc["site"], doc["device"]
        if not isinstance(site, str) or not isinstance(device, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        # The broker would carry anything; a file that is not a signed list is said here.
        raise ConfigError(
            f"{args.file}: not a signed access list (JSON with site and device;"
            " make one with edged acl sign)"
        ) from None
    topic = topics.leaf(site, device, "acl")
    publish_confirmed(broker_from_args(args), topic, payload, retain=True)
    print(f"published (retained) to {topic}; the broker acknowledged it")
    return 0


def _cmd_acl_example(args: argparse.Namespace) -> int:
    import datetime as _dt

    from edged.device.examples import example_acl

    if args.today:
        try:
            today = _dt.date.fromisoformat(args.today)
        except ValueError:
            raise ConfigError(f"--today: not a date (YYYY-MM-DD): {args.today!r}") from None
    else:
        today = _dt.date.today()
    text = example_acl(today)
    if args.out:
        out = Path(args.out)
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{out}: cannot write ({e.strerror or e})") from None
        print(f"wrote the example access list as of {today} to {out}")
    else:
        sys.stdout.write(text)
    return 0


def register(sub: Any) -> None:
    """Add this audience's commands to the ``edged`` parser."""
    acl = sub.add_parser("acl", help="import or show the access list")
    asub = acl.add_subparsers(dest="acl_command", required=True, metavar="ACTION")
    ai = asub.add_parser(
        "import",
        help="store an administrator's TOML/CSV list (raw ids"
        " and PINs are converted, never stored)",
    )
    ai.add_argument("file", help="the list (TOML or CSV), or - for standard input")
    ai.add_argument(
        "--format", choices=["toml", "csv"],
        help="the list's format (default: from the file's name; TOML for -)",
    )  # fmt: skip
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
    aex = asub.add_parser(
        "example",
        help="the example access list, its dates moved to today (a right ending soon, one ended)",
    )
    aex.add_argument("--today", help="the day to move its dates to (YYYY-MM-DD)")
    aex.add_argument("--out")
    aex.set_defaults(handler=_cmd_acl_example)
    apb = asub.add_parser("publish", help="publish a signed list (retained) to its device")
    apb.add_argument("file")
    add_broker_args(apb)
    apb.set_defaults(handler=_cmd_acl_publish)
