"""The ``edged`` command line. Each sub-command is a small function returning an exit code."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from edged.errors import EdgedError, JournalCorruptError, KeyFileError
from edged.keys import (
    PUBLIC_KEY_FILE,
    init_keys,
    key_id_of,
    key_paths,
    load_keys,
    load_public_key,
    public_key_pem,
)

Handler = Callable[[argparse.Namespace], int]


def _cmd_keys_init(args: argparse.Namespace) -> int:
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
    return 0 if result.ok else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from edged.demo import run_demo

    return run_demo(Path(args.state_dir), fast=args.fast)


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
    ki.set_defaults(handler=_cmd_keys_init)
    ks = ksub.add_parser("show", help="print the public key and key id")
    ks.add_argument("--state-dir", required=True)
    ks.set_defaults(handler=_cmd_keys_show)

    v = sub.add_parser("verify", help="check every record of a journal")
    v.add_argument("--db", required=True, help="journal file (journal.db)")
    v.add_argument("--pubkey", help="device public key (PEM); default: beside the journal")
    v.add_argument("--json", action="store_true", help="machine-readable result")
    v.set_defaults(handler=_cmd_verify)

    d = sub.add_parser("demo", help="run the demonstration on simulated hardware")
    d.add_argument("--state-dir", required=True, help="where keys and journal.db are kept")
    d.add_argument("--fast", action="store_true", help="no pauses")
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
