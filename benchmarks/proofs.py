"""Merkle proofs of a big journal (issue 17): the size and time of an inclusion proof and
of a consistency proof in a tree of 10 million records, read from the journal's stored
hashes in SQLite, next to the floor of reading one stored hash (the same query, one
index) in the same run; and the check of each proof.

The tree is built straight into a journal-shaped ``tree_hashes`` table (a frontier adds
each leaf, as the journal does), without signing 10 million records: the proofs read
only the tree. Rounds repeat the measurements (this machine is shared).

Usage: python -m benchmarks.proofs [--records N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from edged.device.journal import tree as jtree
from edged.protocol import tlog


def build(db: Path, n: int) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for sql in jtree.SCHEMA:
        conn.execute(sql)
    f = tlog.Frontier()
    batch: list[tuple[int, bytes]] = []
    conn.execute("BEGIN")
    for i in range(n):
        base = tlog.stored_hash_count(f.size)
        for k, h in enumerate(f.add(b'{"seq":%d,"type":"door.opened"}' % (i + 1))):
            batch.append((base + k, h))
        if len(batch) >= 100_000:
            conn.executemany("INSERT INTO tree_hashes VALUES (?, ?)", batch)
            batch.clear()
    conn.executemany("INSERT INTO tree_hashes VALUES (?, ?)", batch)
    conn.execute("COMMIT")
    return conn


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a small tree: proves it runs (CI)")
    a = ap.parse_args()
    if a.quick:
        a.records, a.rounds = 20_000, 1
    with tempfile.TemporaryDirectory(prefix="edged-bench-proofs-") as tmp:
        t0 = time.perf_counter()
        conn = build(Path(tmp) / "tree.db", a.records)
        n = a.records
        size_mb = (Path(tmp) / "tree.db").stat().st_size / 1e6
        print(f"tree of {n:,} records built in {time.perf_counter() - t0:.0f} s;"
              f" {tlog.stored_hash_count(n):,} stored hashes, {size_mb:.0f} MB")  # fmt: skip
        read = jtree.stored_reader(conn)
        root = tlog.tree_hash(n, read)
        rng = random.Random(17)
        inc, cons, one, checks = [], [], [], []
        sizes = set()
        for _ in range(a.rounds):
            for _ in range(200):
                m = rng.randrange(n)
                t = time.perf_counter()
                read([tlog.stored_hash_index(0, m)])
                one.append(time.perf_counter() - t)
                t = time.perf_counter()
                proof = tlog.prove_record(n, m, read)
                inc.append(time.perf_counter() - t)
                sizes.add(len(proof))
                leaf = read([tlog.stored_hash_index(0, m)])[0]
                t = time.perf_counter()
                tlog.check_record(proof, n, root, m, leaf)
                checks.append(time.perf_counter() - t)
                old = rng.randint(1, n)
                t = time.perf_counter()
                tlog.prove_tree(n, old, read)
                cons.append(time.perf_counter() - t)
        med = statistics.median
        made, checked = med(inc) * 1e3, med(checks) * 1e6
        print(f"inclusion proof: {max(sizes)} hashes ({max(sizes) * 32} bytes) at most;"
              f" {made:.2f} ms median to make, {checked:.0f} us to check")  # fmt: skip
        print(f"consistency proof: {med(cons) * 1e3:.2f} ms median to make")
        print(f"floor, one stored hash read: {med(one) * 1e6:.0f} us; ratio inclusion/floor"
              f" {med(inc) / med(one):.1f}x (log2 n = {n.bit_length()} reads at most)")  # fmt: skip
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
