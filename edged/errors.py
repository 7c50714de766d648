"""One exception tree for everything edged raises on purpose.

Callers catch :class:`EdgedError` to handle any edged failure; the subclasses say which
layer failed, in the style of python-can's ``CanError`` tree.
"""

from __future__ import annotations


class EdgedError(Exception):
    """Base of every error edged raises deliberately."""


class ConfigError(EdgedError):
    """A configuration or input file is invalid; the message names file, field and reason."""


class KeyFileError(EdgedError):
    """A key file is missing, malformed, or readable by users other than its owner."""


class PrivacyError(EdgedError):
    """A value that must never be stored (Individual Number, raw card number, PIN) was offered."""


class JournalError(EdgedError):
    """The journal could not record or read."""


class JournalCorruptError(JournalError):
    """The journal file is not an edged journal, or SQLite reports it damaged."""


class DriverError(EdgedError):
    """A hardware driver failed."""


class DriverInitError(DriverError):
    """A driver could not start (unknown backend name, device missing, library absent)."""


class DriverOperationError(DriverError):
    """A running driver failed an operation."""


class PublishError(EdgedError):
    """The broker did not take a message (unreachable, login or topic refused, no
    acknowledgement): nothing may be reported as published."""


class ControlError(EdgedError):
    """A control-socket request (``edged status``, ``edged sim``) that cannot be carried
    out; its message goes back to the client."""


class DaemonTimeoutError(EdgedError, TimeoutError):
    """The daemon did not answer in time (mixed with the builtin, python-can style)."""
