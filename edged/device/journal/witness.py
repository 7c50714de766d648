"""Remembering the journal's head outside the journal, to see it go backwards (R9, R10).

A restored old copy of ``journal.db`` is a valid journal: every record verifies. What
betrays it is that something else remembers a later head. :class:`HeadWitness` is one such
memory, a small file kept in another directory than the journal (``journal.witness_dir``),
rewritten in place after every commit; the sync state's receipted head is another, and
the central copy the last (see docs/rollback.md).

The file is one fixed-size line with a checksum, written with one ``pwrite`` at offset 0
and not fsynced: after a power cut it may lag the journal (harmless, a lagging witness
sees no rollback), and it never runs ahead, because it is written after the journal's
commit returned. A torn or garbled file reads as "no witness", and is said so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

WITNESS_FILE = "head"
_MAGIC = "edged-head/1"
_SIZE = 160


@dataclass(frozen=True)
class Head:
    """A journal head someone remembers, and who remembers it."""

    seq: int
    hash: str
    source: str  # "witness", "sync", "collector"


def _line(key_id: str, seq: int, h: str) -> bytes:
    text = f"{_MAGIC} {key_id} {seq} {h}"
    check = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text} {check}\n".encode().ljust(_SIZE, b" ")


class HeadWitness:
    """The head (seq, hash) of one device's journal, in a file of its own directory."""

    def __init__(self, directory: Path, key_id: str) -> None:
        self.path = Path(directory) / WITNESS_FILE
        self._key_id = key_id
        self._fd: int | None = None
        self.error: str | None = None  # why the last write failed, if it did

    def read(self) -> Head | None:
        """The remembered head; None if there is none or it cannot be trusted."""
        try:
            raw = self.path.read_bytes()[:_SIZE].decode("ascii").strip()
            magic, key_id, seq, h, check = raw.split(" ")
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        if magic != _MAGIC:
            return None
        text = f"{magic} {key_id} {seq} {h}"
        if hashlib.sha256(text.encode()).hexdigest()[:16] != check:
            return None
        if key_id != self._key_id or not seq.isdigit() or len(h) != 64:
            return None  # another device's, or not ours to trust
        return Head(int(seq), h, "witness")

    def update(self, seq: int, h: str) -> None:
        """Remember (seq, hash). Never raises: a witness that cannot be written weakens the
        check, it must not stop the door; ``error`` says why."""
        try:
            if self._fd is None:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.pwrite(self._fd, _line(self._key_id, seq, h), 0)
            self.error = None
        except OSError as e:
            self.error = f"{self.path}: {e.strerror or e}"
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


COSIGNED_FILE = "cosigned"


def keep_cosigned(directory: Path, note: str, size: int) -> None:
    """Keep ``note`` (a cosigned checkpoint of ``size`` records, already checked) when it
    is newer than the one kept: written to a new file and renamed over the old, so a
    power cut leaves one or the other. Never raises: it strengthens a check, it must
    not stop the door."""
    path = Path(directory) / COSIGNED_FILE
    try:
        old = read_cosigned(directory)
        if old is not None and _size(old) >= size:
            return
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(note)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        pass


def read_cosigned(directory: Path) -> str | None:
    """The kept cosigned checkpoint (unchecked: the caller opens its signatures)."""
    try:
        text = (Path(directory) / COSIGNED_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) <= 4096 else None


def _size(note: str) -> int:
    try:
        return int(note.split("\n")[1])
    except (IndexError, ValueError):
        return -1
