"""The Merkle tree and the signed checkpoints, alone (issue 17): RFC 9162's tree head and
proofs against a direct reading of the RFC, tlog's stored-hash layout, proofs that must
fail, and the C2SP signed note (R9, R13)."""

from __future__ import annotations

import hashlib
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.protocol import tlog
from edged.protocol.note import (
    Checkpoint,
    NoteError,
    add_signature,
    open_note,
    sign_note,
    verifier_key,
)

pytestmark = pytest.mark.unit


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, as written."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return tlog.record_hash(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return tlog.node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _grow(n: int) -> tuple[list[bytes], list[bytes]]:
    tree = tlog.Frontier()
    leaves = [f"record {i}".encode() for i in range(n)]
    stored: list[bytes] = []

    def read(idx: list[int]) -> list[bytes]:
        return [stored[j] for j in idx]

    for i, data in enumerate(leaves):
        new = tree.add(data)  # tlog's order: the leaf, then what it completes
        # The same as tlog's StoredHashes, which reads the left siblings back.
        assert new == tlog.new_stored_hashes(i, data, read)
        stored += new
    return leaves, stored


def test_tree_heads_and_proofs_agree_with_the_rfc():
    """R9: every tree head of 1..200 leaves is the RFC's; random inclusion and
    consistency proofs check; the stored hash count is tlog's."""
    leaves, stored = _grow(200)

    def read(idx):
        return [stored[j] for j in idx]

    rng = random.Random(9162)
    for n in range(1, 201):
        assert tlog.tree_hash(n, read) == _mth(leaves[:n])
        assert tlog.stored_hash_count(n) <= len(stored)
    for _ in range(500):
        n = rng.randint(1, 200)
        m = rng.randrange(n)
        proof = tlog.prove_record(n, m, read)
        tlog.check_record(proof, n, _mth(leaves[:n]), m, tlog.record_hash(leaves[m]))
        old = rng.randint(1, n)
        tlog.check_tree(tlog.prove_tree(n, old, read), n, _mth(leaves[:n]), old, _mth(leaves[:old]))


def test_proofs_that_do_not_prove_are_refused():
    """R9: a changed record, a changed proof hash, the wrong index or size, a root of
    another tree: each is a ProofError."""
    leaves, stored = _grow(50)

    def read(idx):
        return [stored[j] for j in idx]

    root = _mth(leaves[:37])
    proof = tlog.prove_record(37, 20, read)
    good = tlog.record_hash(leaves[20])
    bad_cases = [
        (proof, 37, root, 20, tlog.record_hash(b"record 20 changed")),
        ([proof[0][::-1], *proof[1:]], 37, root, 20, good),
        (proof, 37, root, 21, good),
        # (A wrong size with the right root can pass the path arithmetic, as in Go's
        # tlog: the root already names the tree. The checkpoint signs size and root.)
        (proof, 37, _mth(leaves[:36]), 20, good),
        (proof[:-1], 37, root, 20, good),
        ([*proof, proof[0]], 37, root, 20, good),
    ]
    for case in bad_cases:
        with pytest.raises(tlog.ProofError):
            tlog.check_record(*case)
    cons = tlog.prove_tree(37, 12, read)
    with pytest.raises(tlog.ProofError):
        tlog.check_tree(cons, 37, root, 12, _mth(leaves[:11]))  # another old tree
    with pytest.raises(tlog.ProofError):
        tlog.check_tree(cons[1:], 37, root, 12, _mth(leaves[:12]))


def test_a_signed_checkpoint_opens_only_with_its_key():
    """R13: the C2SP note opens with the signer's key; another key, a changed size or
    root, or a truncated signature does not; a cosignature adds a line and both open."""
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    cp = Checkpoint("edged/tokyo/door-1", 42, hashlib.sha256(b"x").digest())
    note = sign_note(cp.text(), cp.origin, key.public_key(), key.sign)
    assert Checkpoint.parse(open_note(note, cp.origin, key.public_key())) == cp
    vkey = verifier_key(cp.origin, key.public_key())
    assert vkey.startswith("edged/tokyo/door-1+") and len(vkey.split("+")[1]) == 8
    for bad in (
        note.replace("\n42\n", "\n43\n"),
        note[:-10] + "AAAAAAAAA\n",
        note.replace("\u2014 ", "- "),
    ):
        with pytest.raises(NoteError):
            open_note(bad, cp.origin, key.public_key())
    with pytest.raises(NoteError):
        open_note(note, cp.origin, other.public_key())
    both = add_signature(note, "collector", other.public_key(), other.sign)
    assert open_note(both, "collector", other.public_key()) == cp.text()
    assert open_note(both, cp.origin, key.public_key()) == cp.text()
    with pytest.raises(NoteError):
        sign_note("two\n\nparagraphs\n", "n", key.public_key(), key.sign)
