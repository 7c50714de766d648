"""The journal's history at start and after: has it gone back (R9, R10;
docs/rollback.md), and what changed since the last start (R22)?

Three witnesses remember a later head than a journal put back to an older copy has: the
head the central copy last receipted, the head witness kept outside the state directory,
and checkpoints the collector cosigned. This part of the device runtime asks them and
says what to do: a signed rollback record (which the journal appends itself, with the
seqs past it), or an ``alarm.checkpoint_contradicted`` for the daemon to record. It never
touches the door.
"""

from __future__ import annotations

import hashlib

from edged import __version__
from edged.core.actions import Action, Record
from edged.device.config import Config
from edged.device.journal import Journal
from edged.device.journal.witness import Head, keep_cosigned, read_cosigned
from edged.errors import EdgedError
from edged.log import get_logger
from edged.protocol.keys import key_id_of, load_public_key
from edged.protocol.note import NoteError, open_note, origin_of
from edged.protocol.records import ROLLBACK
from edged.protocol.records import Record as Written

log = get_logger("daemon")


class History:
    def __init__(self, cfg: Config, journal: Journal) -> None:
        self.cfg, self.journal = cfg, journal

    def at_start(self, receipted: Head | None) -> Written | None:
        """Before any door decision: does anything remember a later head than the journal
        has? Then the file was put back to an older copy: the rollback record, appended."""
        remembered = [h for h in (receipted,) if h is not None]
        witness = self.journal.witness
        if witness is not None:
            seen = witness.read()
            if seen is None and witness.path.exists():
                log.error("head_witness_unreadable", path=str(witness.path))
            if seen is not None:
                remembered.append(seen)
        return self._rolled_back(self.journal.find_rollback(remembered))

    def central_head(self, seq: int, h: str) -> Written | None:
        """The collector holds (seq, hash) of this device: if the journal does not contain
        it, the journal went back (or forked) behind the daemon's back."""
        try:
            return self._rolled_back(self.journal.find_rollback([Head(seq, h, "collector")]))
        except EdgedError as e:
            log.error("rollback_check_failed", error=str(e))
            return None

    def _rolled_back(self, known: Head | None) -> Written | None:
        if known is None:
            return None
        try:
            rec = self.journal.append_rollback(known)
        except EdgedError as e:
            log.error("journal_write_failed", error=str(e), lost_types=[ROLLBACK])
            return None
        log.error("journal_rolled_back", found_seq=rec.fields["found_seq"],
                  known_seq=known.seq, source=known.source, seq=rec.seq)  # fmt: skip
        return rec

    def cosigned(self, payload: bytes, *, kept: bool = False) -> list[Action]:
        """A checkpoint of this device that the collector checked against the records it
        holds and cosigned (issue 17). Signed by this device and by the collector, it is
        the history someone else saw: a journal with fewer records than it names went
        back, one with another tree at its size forked. Either is an alarm, recorded.
        The newest one is kept in the witness directory, outside the state directory, so
        that a journal put back while the network is down still meets it at start-up."""
        sync = self.cfg.sync
        if sync is None or sync.collector_pubkey is None:
            return []
        collector = load_public_key(sync.collector_pubkey)
        origin = origin_of(self.cfg.site, self.cfg.device)
        try:
            note = payload.decode()
            open_note(note, f"edged-collector/{key_id_of(collector)}", collector)
            cp = self.journal.chain.open_checkpoint(note, origin)
        except (NoteError, UnicodeDecodeError) as e:
            log.warning("cosigned_checkpoint_refused", error=str(e), kept=kept)
            return []
        why = self.journal.contradicts(cp.size, cp.root)
        witness_dir = self.cfg.journal.witness_dir
        if why is None and not kept and witness_dir is not None:
            keep_cosigned(witness_dir, note, cp.size)
        last = self.journal.last_of_type("alarm.checkpoint_contradicted")
        if why is None or (last and last.get("size") == cp.size):  # once each
            return []
        log.warning("checkpoint_contradicted", size=cp.size, why=why)
        f = {"size": cp.size, "why": why, "tree_size": self.journal.tree_size}
        return [Record("alarm.checkpoint_contradicted", f)]

    def kept_cosigned(self) -> list[Action]:
        """The newest cosigned checkpoint kept outside the state directory against the
        journal, before the network is up: a journal put back behind it is an alarm."""
        wd = self.cfg.journal.witness_dir
        kept = read_cosigned(wd) if wd is not None and self.cfg.sync is not None else None
        return self.cosigned(kept.encode(), kept=True) if kept is not None else []


def start_records(cfg: Config, simulate: bool, journal: Journal) -> list[Action]:
    """``daemon.started`` with the running version and configuration hash, and, when
    either differs from the last start's, ``system.changed`` saying from what to what:
    an upgrade or an edited configuration is a record the central copy sees (R22)."""
    started = {
        "version": __version__,
        "mode": "simulate" if simulate else "hardware",
        "config_sha256": hashlib.sha256(cfg.file.read_bytes()).hexdigest()[:16],
    }
    out: list[Action] = []
    last = journal.last_of_type("daemon.started")
    if last is not None:
        changed = {
            k: {"was": last.get(k), "now": started[k]}
            for k in ("version", "config_sha256")
            if last.get(k) != started[k]
        }
        if changed:
            out.append(Record("system.changed", {"changed": changed}))
    return [*out, Record("daemon.started", started)]
