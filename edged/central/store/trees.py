"""Each device's tree (its Merkle frontier, grown from the records as they are stored),
the checkpoints the collector cosigned, and the device's epoch certificates (issue 17)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from edged.central.store.sql import Dev, Sql
from edged.central.verify import canonical_body
from edged.protocol.epochs import CERT
from edged.protocol.records import ROLLBACK
from edged.protocol.tlog import Frontier


class TreeTable:
    """Each device's tree and epochs on the store's connection, and what the open
    transaction grew: ``sizes`` (device -> tree size and frontier), ``dirty`` (grown, not
    yet written with its head row), ``no_leaf`` (records kept but no leaf of the chain's
    tree), ``events`` (checkpoint records stored, with the tree before each)."""

    def __init__(self, sql: Sql) -> None:
        self._s = sql
        self.events: list[tuple[Dev, int, str, int, bytes]] = []
        self.forget()

    def _x(self, sql: str, params: Any = ()) -> Any:
        return self._s._x(sql, params)

    def keep_epochs(self, rows: Sequence[tuple[Any, ...]]) -> None:
        certs = [
            (site, device, json.loads(body).get("next_epoch"), seq, body)
            for site, device, seq, rtype, _ts, _h, body, _c in rows
            if rtype == CERT
        ]
        if certs:
            self._s._exec_many(
                "INSERT INTO device_epochs VALUES (?,?,?,?,?)"
                " ON CONFLICT (site, device, epoch) DO NOTHING",
                certs,
            )

    def epoch_certs(self, dev: Dev) -> list[str]:
        """A device's stored epoch certificates (wire records), in epoch order."""
        return [
            w
            for (w,) in self._x(
                "SELECT wire FROM device_epochs WHERE site = ? AND device = ? ORDER BY epoch",
                dev,
            ).fetchall()
        ]

    def fill_epochs(self) -> None:
        """The certificates among the records already stored (migration 9)."""
        rows = self._x(
            "SELECT site, device, seq, type, ts, hash, body, 0 FROM records WHERE type = ?"
            " ORDER BY site, device, seq",
            (CERT,),
        ).fetchall()
        self.keep_epochs(rows)

    def grow(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Each device's tree grows by its stored records, in order; a checkpoint record
        is compared with the tree before it (see ``tree_events``)."""
        by_dev: dict[Dev, list[tuple[Any, ...]]] = {}
        for r in rows:
            by_dev.setdefault((r[0], r[1]), []).append(r)
        # Known from the batch's head rows, mostly (lock_heads reads them with the heads).
        unknown = [dev for dev in by_dev if dev not in self.sizes]
        if unknown:
            for site, device, size, frontier in self._s._for_keys(
                "SELECT site, device, tree_size, tree_frontier FROM devices WHERE"
                " (site, device) IN (VALUES",
                unknown,
            ):
                self.sizes[(site, device)] = (size, frontier)
        for dev, recs in by_dev.items():
            size, text = self.sizes.get(dev, (0, ""))
            if size < 0:
                continue  # the start of this device's records is gone: no tree to check
            tree = Frontier(
                size, [bytes.fromhex(text[i : i + 64]) for i in range(0, len(text), 64)]
            )
            for _s, _d, seq, rtype, _ts, h, body, _c in recs:
                if (*dev, seq) in self.no_leaf:
                    continue
                if rtype == "checkpoint":
                    self.events.append((dev, seq, body, tree.size, tree.root()))
                elif rtype == ROLLBACK:
                    # The device went back to an older copy of its journal, and its tree
                    # with it: from here on its tree is the one of the records up to
                    # found_seq, which this copy holds (the rest stays stored, apart).
                    found = json.loads(body).get("found_seq")
                    if type(found) is int:
                        tree = self.upto(dev, found)
                tree.add(canonical_body(body, h))  # a leaf is what the hash is of
            # Written with the head row at the batch's end (save_heads), or at commit.
            self.sizes[dev] = (tree.size, _frontier_text(tree))
            self.dirty.add(dev)

    def flush(self) -> None:
        """The grown trees not yet written with a head row (before every commit)."""
        self._s.write_pending()
        if self.dirty:
            self._s._exec_many(
                "UPDATE devices SET tree_size = ?, tree_frontier = ? WHERE site = ? AND device = ?",
                [(*self.sizes[d], *d) for d in sorted(self.dirty)],
            )
        self.forget()

    def forget(self) -> None:
        # Between transactions the rows are the store's: another collector may grow them.
        self.sizes: dict[Dev, tuple[int, str]] = {}
        self.dirty: set[Dev] = set()
        self.no_leaf: set[tuple[str, str, int]] = set()

    def upto(self, dev: Dev, seq: int) -> Frontier:
        """The tree of the device's stored records up to ``seq``."""
        tree = Frontier()
        for h, body in self._x(
            "SELECT hash, body FROM records WHERE site = ? AND device = ? AND seq <= ?"
            " ORDER BY seq",
            (*dev, seq),
        ).fetchall():
            tree.add(canonical_body(body, h))
        return tree

    def take_events(self) -> list[tuple[Dev, int, str, int, bytes]]:
        """The checkpoint records stored since the last call: (device, seq, body, the
        central tree's size and root before it)."""
        out, self.events = self.events, []
        return out

    def add_cosigned_many(self, notes: Sequence[tuple[Dev, int, str]], ts: str) -> None:
        """Checkpoints this store cosigned: (device, size, note)."""
        self._s.begin()
        self._s._many(
            "INSERT INTO cosigned VALUES (?,?,?,?,?) ON CONFLICT (site, device, size) DO NOTHING",
            [(*dev, size, note, ts) for dev, size, note in notes],
        )

    def cosigned(self, dev: Dev) -> list[tuple[int, str]]:
        return [
            (size, note)
            for size, note in self._x(
                "SELECT size, note FROM cosigned WHERE site = ? AND device = ? ORDER BY size",
                dev,
            ).fetchall()
        ]

    def fill_trees(self) -> None:
        """Grow every device's tree from the records already stored (migration 8); a
        device whose first records were removed by retention has none (size -1)."""
        firsts = self._x("SELECT site, device, min(seq) FROM records GROUP BY site, device")
        for site, device, first in firsts.fetchall():
            if first != 1:
                self._x(
                    "UPDATE devices SET tree_size = -1 WHERE site = ? AND device = ?",
                    (site, device),
                )
                continue
            tree = self.upto((site, device), 2**62)
            self._x(
                "UPDATE devices SET tree_size = ?, tree_frontier = ? WHERE site = ? AND device = ?",
                (tree.size, _frontier_text(tree), site, device),
            )


def _frontier_text(tree: Frontier) -> str:
    """A device's tree frontier as the head row keeps it: its hashes in hex, in order."""
    return "".join(h.hex() for h in tree.hashes)
