"""The ``edged`` command line, one module per audience: :mod:`edged.cli.device` (the door
controller and its auditor), :mod:`edged.cli.admin` (access lists), :mod:`edged.cli.central`
(the collector), :mod:`edged.cli.sim` (simulated hardware). Each sub-command is a small
function returning an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from edged.cli import admin, card, central, device, sim
from edged.errors import EdgedError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the docs and tests)."""
    p = argparse.ArgumentParser(
        prog="edged",
        description="Edge daemon for doors and cabinets of personal-data handling areas.",
    )
    from edged import __version__

    p.add_argument("--version", action="version", version=f"edged {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for audience in (device, admin, card, central, sim):
        audience.register(sub)
    _finish_help(p)
    return p


# Help for the options many commands share, where a command gave none of its own.
_HELP = {
    "state_dir": "the device's state directory (keys, journal.db, acl.json)",
    "config": "the device configuration (edged.toml)",
    "json": "print the answer as JSON",
    "db": "the journal file (journal.db)",
    "lang": "language of the ledger",
    "file": "the input file",
    "version": "the access list's version (must be newer than the one in force)",
    "expires_days": "days the signed list stays valid",
    "out": "the file to write",
    "username": "user name at the broker",
    "password_file": "file holding the broker password (0600)",
    "reader": "the logical reader (readers.* in the config)",
    "kind": "the card's technology (default: from the identifier's length)",
    "behaviour": "how the virtual card answers (for testing bad cards)",
    "action": "what to do",
    "door": "the door (default: the first in the config)",
    "name": "the cabinet (cabinets.* in the config)",
    "keys": "keys to press, e.g. 1234# (* clears, # submits)",
    "state": "on: the enclosure is opened; off: closed again",
}


class _Help(argparse.HelpFormatter):
    """Shows an option's default where it has a real one (not None, not a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        d = action.default
        if d not in (None, False, "", argparse.SUPPRESS) and "default" not in text:
            text += f" (default: {d})"
        return text


def _finish_help(p: argparse.ArgumentParser) -> None:
    """Every option says what it is and its default (``edged CMD --help``)."""
    p.formatter_class = _Help
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sp in a.choices.values():
                _finish_help(sp)
        elif a.help is None:
            a.help = _HELP.get(a.dest)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edged`` console script."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except EdgedError as e:
        print(f"edged: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # A file or directory that cannot be read or written (report --out into a missing
        # folder, keys init where the user may not write, acl publish of a missing file):
        # one line naming it, never a traceback.
        where = f"{e.filename}: " if e.filename else ""
        print(f"edged: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
