"""A Merkle tree over a journal's records, as RFC 9162 (RFC 6962 hashing) and Go's
``golang.org/x/mod/sumdb/tlog`` define it, so that standard tools check edged's proofs.

Leaves are the records' canonical wire bytes: leaf hash = SHA-256(0x00 || bytes), node =
SHA-256(0x01 || left || right). Hashes are kept in tlog's *stored hash* layout: every
complete subtree's hash once, appended as leaves arrive (at most log2(n) new ones per
leaf), so the tree head and any proof read O(log n) of them, never the whole log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

Hash = bytes
# Reads the stored hashes at these indexes (in order).
HashReader = Callable[[Sequence[int]], list[Hash]]


class ProofError(ValueError):
    """A proof does not prove what it was asked to."""


def record_hash(data: bytes) -> Hash:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: Hash, right: Hash) -> Hash:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY = hashlib.sha256(b"").digest()


# -- the stored hash layout (as tlog's StoredHashIndex / StoredHashes) -----------------
def stored_hash_index(level: int, n: int) -> int:
    """Where the hash of the ``n``-th complete subtree of height ``level`` is stored:
    level L's n-th hash right after level L+1's (2n+1)-th, as tlog stores them."""
    for _ in range(level):
        n = 2 * n + 1
    i = 0
    while n > 0:  # level 0's n-th hash is at n + n/2 + n/4 + ...
        i += n
        n >>= 1
    return i + level


def stored_hash_count(n: int) -> int:
    """How many hashes are stored for a tree of ``n`` leaves."""
    if n == 0:
        return 0
    num = stored_hash_index(0, n - 1) + 1
    i = n - 1
    while i & 1:  # each trailing one of n-1 completed a subtree
        num += 1
        i >>= 1
    return num


def new_stored_hashes(n: int, data: bytes, read: HashReader) -> list[Hash]:
    """The hashes to append when leaf ``n`` (0-based) with ``data`` joins the tree: its
    leaf hash, then one for each subtree it completes (tlog's StoredHashes)."""
    h = record_hash(data)
    out = [h]
    m = ((n + 1) & -(n + 1)).bit_length() - 1  # trailing zeros of n+1
    indexes = [0] * m
    for i in range(m):
        indexes[m - 1 - i] = stored_hash_index(i, (n >> i) - 1)
    old = read(indexes) if m else []
    for i in range(m):
        h = node_hash(old[m - 1 - i], h)
        out.append(h)
    return out


# -- tree heads ------------------------------------------------------------------------
def _subtree_indexes(lo: int, hi: int, need: list[int]) -> None:
    """The stored hashes that cover leaves [lo, hi): complete subtrees, largest first."""
    while lo < hi:
        level = (hi - lo).bit_length() - 1  # the largest power of two <= what is left
        need.append(stored_hash_index(level, lo >> level))
        lo += 1 << level


def _fold(hashes: Sequence[Hash]) -> Hash:
    """The hash of leaves covered by complete subtrees (largest first, as
    :func:`_subtree_indexes` lists them and a frontier keeps them), combined as RFC 9162
    does: right to left."""
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def tree_hash(n: int, read: HashReader) -> Hash:
    """The root of the first ``n`` leaves."""
    return _mth(0, n, read) if n else EMPTY


def _mth(lo: int, hi: int, read: HashReader) -> Hash:
    need: list[int] = []
    _subtree_indexes(lo, hi, need)
    return _fold(read(need))


def _largest_power_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


# -- proofs (RFC 9162 2.1.3 and 2.1.4) -------------------------------------------------
def prove_record(n: int, m: int, read: HashReader) -> list[Hash]:
    """The inclusion proof of leaf ``m`` in the tree of ``n`` leaves."""
    if not 0 <= m < n:
        raise ProofError(f"leaf {m} is not in a tree of {n}")
    proof: list[Hash] = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = _largest_power_below(hi - lo)
        if m - lo < k:
            proof.append(_mth(lo + k, hi, read))
            hi = lo + k
        else:
            proof.append(_mth(lo, lo + k, read))
            lo = lo + k
    return proof[::-1]


def prove_tree(n: int, m: int, read: HashReader) -> list[Hash]:
    """The consistency proof from the tree of ``m`` leaves to the tree of ``n``."""
    if not 0 < m <= n:
        raise ProofError(f"no consistency proof from {m} to {n}")

    def sub(lo: int, hi: int, m_: int, whole: bool) -> list[Hash]:
        if m_ == hi - lo:
            return [] if whole else [_mth(lo, hi, read)]
        k = _largest_power_below(hi - lo)
        if m_ <= k:
            return [*sub(lo, lo + k, m_, whole), _mth(lo + k, hi, read)]
        return [*sub(lo + k, hi, m_ - k, False), _mth(lo, lo + k, read)]

    return sub(0, n, m, True)


def check_record(proof: Sequence[Hash], n: int, root: Hash, m: int, leaf: Hash) -> None:
    """Raise ProofError unless ``proof`` shows leaf hash ``leaf`` at index ``m`` of the
    tree of ``n`` leaves with ``root`` (RFC 9162 2.1.3.2)."""
    if not 0 <= m < n:
        raise ProofError(f"leaf {m} is not in a tree of {n}")
    fn, sn, r = m, n - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise ProofError("inclusion proof does not lead to the tree's root")


def check_tree(proof: Sequence[Hash], n: int, root_n: Hash, m: int, root_m: Hash) -> None:
    """Raise ProofError unless ``proof`` shows the tree of ``m`` leaves with ``root_m``
    is a prefix of the tree of ``n`` with ``root_n`` (RFC 9162 2.1.4.2)."""
    if not 0 < m <= n:
        raise ProofError(f"no consistency from {m} to {n}")
    if m == n:
        if proof or root_m != root_n:
            raise ProofError("the same size must have the same root and no proof")
        return
    path = list(proof)
    if m & (m - 1) == 0:  # m a power of two: the old root is the first node
        path.insert(0, root_m)
    if not path:
        raise ProofError("consistency proof is empty")
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != root_m or sr != root_n:
        raise ProofError("consistency proof does not join the two roots")


class Frontier:
    """The right edge of a growing tree: the hash of each complete subtree of the binary
    decomposition of its size, largest first. Enough to add leaves (the new stored
    hashes are its merges) and to compute the root, in O(log n) memory: what an appender
    and a verifier of millions of records keep."""

    def __init__(self, size: int = 0, hashes: list[Hash] | None = None) -> None:
        self.size = size
        self.hashes = list(hashes or [])
        if len(self.hashes) != size.bit_count():
            raise ProofError("a frontier needs one hash per one-bit of its size")

    @classmethod
    def stored(cls, size: int, read: HashReader) -> Frontier:
        """The frontier of a tree of ``size`` leaves from its stored hashes."""
        return cls(size, read(frontier_indexes(size)))

    def add(self, data: bytes) -> list[Hash]:
        """Add a leaf; the hashes to store for it (tlog's order: leaf, then merges)."""
        h = record_hash(data)
        out = [h]
        n = self.size
        while n & 1:
            h = node_hash(self.hashes.pop(), h)
            out.append(h)
            n >>= 1
        self.hashes.append(h)
        self.size += 1
        return out

    def root(self) -> Hash:
        return _fold(self.hashes) if self.hashes else EMPTY

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)


def frontier_indexes(size: int) -> list[int]:
    """Where the frontier of a tree of ``size`` leaves is stored, largest subtree first."""
    out = []
    lo = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append(stored_hash_index(level, lo >> level))
            lo += 1 << level
    return out
