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


class TreeSql(Sql):
    def _keep_epochs(self, rows: Sequence[tuple[Any, ...]]) -> None:
        certs = [
            (site, device, json.loads(body).get("next_epoch"), seq, body)
            for site, device, seq, rtype, _ts, _h, body, _c in rows
            if rtype == CERT
        ]
        if certs:
            self._exec_many(
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

    def _fill_epochs(self) -> None:
        """The certificates among the records already stored (migration 9)."""
        rows = self._x(
            "SELECT site, device, seq, type, ts, hash, body, 0 FROM records WHERE type = ?"
            " ORDER BY site, device, seq",
            (CERT,),
        ).fetchall()
        self._keep_epochs(rows)

    def _grow_trees(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Each device's tree grows by its stored records, in order; a checkpoint record
        is compared with the tree before it (see ``tree_events``)."""
        by_dev: dict[Dev, list[tuple[Any, ...]]] = {}
        for r in rows:
            by_dev.setdefault((r[0], r[1]), []).append(r)
        # Known from the batch's head rows, mostly (lock_heads reads them with the heads).
        unknown = [dev for dev in by_dev if dev not in self._trees]
        if unknown:
            for site, device, size, frontier in self._for_keys(
                "SELECT site, device, tree_size, tree_frontier FROM devices WHERE"
                " (site, device) IN (VALUES",
                unknown,
            ):
                self._trees[(site, device)] = (size, frontier)
        for dev, recs in by_dev.items():
            size, text = self._trees.get(dev, (0, ""))
            if size < 0:
                continue  # the start of this device's records is gone: no tree to check
            tree = Frontier(
                size, [bytes.fromhex(text[i : i + 64]) for i in range(0, len(text), 64)]
            )
            for _s, _d, seq, rtype, _ts, h, body, _c in recs:
                if (*dev, seq) in self._no_leaf:
                    continue
                if rtype == "checkpoint":
                    self.tree_events.append((dev, seq, body, tree.size, tree.root()))
                elif rtype == ROLLBACK:
                    # The device went back to an older copy of its journal, and its tree
                    # with it: from here on its tree is the one of the records up to
                    # found_seq, which this copy holds (the rest stays stored, apart).
                    found = json.loads(body).get("found_seq")
                    if type(found) is int:
                        tree = self._tree_upto(dev, found)
                tree.add(canonical_body(body, h))  # a leaf is what the hash is of
            # Written with the head row at the batch's end (save_heads), or at commit.
            self._trees[dev] = (tree.size, _frontier_text(tree))
            self._trees_dirty.add(dev)

    def _flush_trees(self) -> None:
        """The grown trees not yet written with a head row (before every commit)."""
        if self._rows:
            self._write_rows()
        if self._trees_dirty:
            self._exec_many(
                "UPDATE devices SET tree_size = ?, tree_frontier = ? WHERE site = ? AND device = ?",
                [(*self._trees[d], *d) for d in sorted(self._trees_dirty)],
            )
        self._forget_trees()

    def _forget_trees(self) -> None:
        # Between transactions the rows are the store's: another collector may grow them.
        self._trees, self._trees_dirty = {}, set()
        self._no_leaf: set[tuple[str, str, int]] = set()

    def _tree_upto(self, dev: Dev, seq: int) -> Frontier:
        """The tree of the device's stored records up to ``seq``."""
        tree = Frontier()
        for h, body in self._x(
            "SELECT hash, body FROM records WHERE site = ? AND device = ? AND seq <= ?"
            " ORDER BY seq",
            (*dev, seq),
        ).fetchall():
            tree.add(canonical_body(body, h))
        return tree

    def take_tree_events(self) -> list[tuple[Dev, int, str, int, bytes]]:
        """The checkpoint records stored since the last call: (device, seq, body, the
        central tree's size and root before it)."""
        out, self.tree_events = self.tree_events, []
        return out

    def add_cosigned_many(self, notes: Sequence[tuple[Dev, int, str]], ts: str) -> None:
        """Checkpoints this store cosigned: (device, size, note)."""
        self.begin()
        self._many(
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

    def _fill_trees(self) -> None:
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
            tree = self._tree_upto((site, device), 2**62)
            self._x(
                "UPDATE devices SET tree_size = ?, tree_frontier = ? WHERE site = ? AND device = ?",
                (tree.size, _frontier_text(tree), site, device),
            )


def _frontier_text(tree: Frontier) -> str:
    """A device's tree frontier as the head row keeps it: its hashes in hex, in order."""
    return "".join(h.hex() for h in tree.hashes)
