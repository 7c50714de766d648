"""The ``edged`` command line, one module per audience: :mod:`edged.cli.device` (the door
controller and its auditor), :mod:`edged.cli.admin` (access lists), :mod:`edged.cli.central`
(the collector), :mod:`edged.cli.sim` (simulated hardware). Each sub-command is a small
function returning an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from edged.cli import admin, central, device, sim
from edged.errors import EdgedError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the docs and tests)."""
    p = argparse.ArgumentParser(
        prog="edged",
        description="Edge daemon for doors and cabinets of personal-data handling areas.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for audience in (device, admin, central, sim):
        audience.register(sub)
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
