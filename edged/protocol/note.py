"""Checkpoints in the C2SP formats that standard tooling reads: a ``tlog-checkpoint``
(origin, tree size, root hash) inside a ``signed-note``, signed with Ed25519.

A note is its text (ending in a newline), a blank line, and one line per signature:
``— NAME BASE64(key_id[4] || signature)``, where key_id is the first 4 bytes of
SHA-256(NAME || "\\n" || 0x01 || public key). Go's ``golang.org/x/mod/sumdb/note`` opens
it with the verifier key ``NAME+HEX(key_id)+BASE64(0x01 || public key)``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = b"\x01"
DASH = "\u2014"  # the em dash that starts a signature line


class NoteError(ValueError):
    """A note that is malformed, or not signed by the key asked for."""


def _raw(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_hash(name: str, pub: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + _raw(pub)).digest()[:4]


def verifier_key(name: str, pub: Ed25519PublicKey) -> str:
    """The key as Go's note.NewVerifier takes it."""
    b64 = base64.b64encode(ALG_ED25519 + _raw(pub)).decode()
    return f"{name}+{key_hash(name, pub).hex()}+{b64}"


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"note key name {name!r}: no spaces and no '+'")


def sign_note(text: str, name: str, pub: Ed25519PublicKey, sign: Callable[[bytes], bytes]) -> str:
    """``text`` (ending in one newline) signed as a note by ``name``."""
    _check_name(name)
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("note text must end in one newline and hold no blank line")
    sig = sign(text.encode())
    return f"{text}\n{DASH} {name} {base64.b64encode(key_hash(name, pub) + sig).decode()}\n"


def add_signature(
    note: str, name: str, pub: Ed25519PublicKey, sign: Callable[[bytes], bytes]
) -> str:
    """``note`` with one more signature (a witness's cosignature) over the same text."""
    text, _sigs = split_note(note)
    line = sign_note(text, name, pub, sign)[len(text) + 1 :]
    return note + line


def split_note(note: str) -> tuple[str, list[str]]:
    """(text, signature lines)."""
    text, sep, sigs = note.rpartition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise NoteError("not a signed note (no blank line before the signatures)")
    lines = sigs[:-1].split("\n")
    if not lines or not all(line.startswith(DASH + " ") for line in lines):
        raise NoteError("malformed signature line")
    return text + "\n", lines


def open_note(note: str, name: str, pub: Ed25519PublicKey) -> str:
    """The note's text if ``name``'s key signed it; NoteError otherwise."""
    text, lines = split_note(note)
    want = key_hash(name, pub)
    for line in lines:
        try:
            _dash, who, b64 = line.split(" ")
            blob = base64.b64decode(b64, validate=True)
        except ValueError:
            raise NoteError("malformed signature line") from None
        if who != name or blob[:4] != want:
            continue
        try:
            pub.verify(blob[4:], text.encode())
        except InvalidSignature:
            raise NoteError(f"{name}'s signature does not verify") from None
        return text
    raise NoteError(f"not signed by {name}")


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint: the log's origin, its size and the root hash."""

    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        try:
            origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
        except (IndexError, ValueError):
            raise NoteError("not a tlog checkpoint (origin, size, root hash)") from None
        if not origin or size < 0 or len(root) != 32 or str(size) != lines[1]:
            raise NoteError("not a tlog checkpoint (origin, size, root hash)")
        return cls(origin, size, root)


def origin_of(site: str, device: str) -> str:
    """The log's name for a device: its checkpoints' origin and its note key's name."""
    return f"edged/{site or '-'}/{device or '-'}"
