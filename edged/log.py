"""structlog set-up: JSON lines for journald, readable lines on a terminal.

Thread errors are routed here too (``threading.excepthook``), never to bare stderr.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

import structlog


def configure_logging(
    stream: TextIO | None = None, *, json: bool | None = None, level: int = logging.INFO
) -> None:
    """Configure structlog for the process; ``json`` defaults to "not a TTY".

    Without ``stream``, each line goes to whatever ``sys.stdout`` is when it is written.
    """
    if json is None:
        json = not (stream or sys.stdout).isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    threading.excepthook = _thread_excepthook


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    name = args.thread.name if args.thread else "?"
    structlog.get_logger("edged").error(
        "thread_crashed",
        thread=name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def get_logger(name: str = "edged") -> Any:
    """A structlog logger bound to a component name.

    Lazy: module-level loggers take the configuration in force when they first log, not
    the one at import time.
    """
    return structlog.get_logger(name, component=name)
