"""The daemon: wires drivers -> core -> journal, and executes what the core decides.

One thread (the caller of :meth:`Daemon.run`) owns the core, the journal and the
outputs. Driver threads and the control socket only put items on the queue
(Invariant 1). The loop blocks on that queue until the next event or the core's next
deadline; it never sleeps.
"""

from __future__ import annotations

import gc
import hashlib
import json
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edged import __version__
from edged.clock import Clock, SystemClock
from edged.core import Core, Indicate, Record, SetCabinetLock, SetLock
from edged.core.actions import Action, StorePin
from edged.core.events import Event
from edged.core.replay import REPLAYED
from edged.core.state import Now
from edged.device.acl import (
    AccessList,
    load_active,
    load_local_pins,
    pin_checker,
    pin_hasher,
    save_local_pin,
)
from edged.device.clockwatch import ClockWatch
from edged.device.config import Config
from edged.device.hardware import CabinetSensors, Device, DoorIO, Indicators
from edged.device.journal import Journal
from edged.device.journal.guard import GuardedJournal
from edged.device.journal.witness import Head, HeadWitness
from edged.device.keys import load_keys
from edged.device.notify import sd_notify, watchdog_interval
from edged.device.paths import StatePaths
from edged.device.refusals import Refusals
from edged.errors import DaemonTimeoutError, EdgedError
from edged.log import get_logger
from edged.protocol.privacy import CardFingerprinter
from edged.protocol.records import ENVELOPE_FIELDS, ROLLBACK, format_ts, parse_ts

log = get_logger("daemon")

_STOP = object()


@dataclass
class _Call:
    """A function to run on the core thread (control-socket queries); result via ``done``."""

    fn: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Processed:
    """One handled event and the records it produced (for observers: tests, control socket)."""

    n: int
    event: Event | None
    records: tuple[dict[str, Any], ...]


class Daemon:
    """edged's main loop. ``simulate=True`` runs on :class:`edged.simulators.rig.SimRig`."""

    def __init__(
        self,
        config: Config,
        *,
        simulate: bool = False,
        clock: Clock | None = None,
        control_socket: bool | None = None,
        sim_pcscd: bool = True,
    ) -> None:
        self.cfg = config
        self.simulate = simulate
        self.clock = clock or SystemClock(assume_synced=config.clock.assume_synced)
        self.state_dir = Path(config.state_dir)
        self.paths = StatePaths(self.state_dir)
        self.queue: queue.Queue[Any] = queue.Queue()
        self.core = Core(config)
        self.rig: Any = None
        self._sim_pcscd = sim_pcscd
        self.devices: list[Device] = []
        self.doors: DoorIO | None = None
        self.cabinets: CabinetSensors | None = None
        self.displays: Any = None  # DoorDisplays, when the config has displays
        self.indicators: Indicators | None = None
        self.card_reader: Any = None
        self.journal: Journal | None = None
        # While the journal cannot record: since when, why, how many records were lost.
        self.guard: GuardedJournal | None = None  # the journal, accounting for faults
        self._lock_fd: int | None = None  # flock on the state directory's edged.lock
        self.time = ClockWatch(self.clock)
        self.sync: Any = None
        self.metrics: Any = None
        # The control socket always answers state queries (edged status); the hardware
        # commands behind `edged sim` exist only with --simulate.
        self._want_control = True if control_socket is None else control_socket
        self.control: Any = None
        self._processed: deque[Processed] = deque(maxlen=1000)
        self._count = 0
        self._cond = threading.Condition()
        self.running = threading.Event()
        self._watchdog = watchdog_interval()
        self._next_ping = 0.0
        self._next_prune = 0.0  # first look right after start, then every prune_check_seconds
        self.stopped = threading.Event()
        # Refused inbound lists: an interval open until (monotonic), counts since then.
        interval = config.sync.refusal_interval_seconds if config.sync else 60.0
        self.refusals = Refusals(interval)

    # -- set-up ----------------------------------------------------------------------
    def _open_journal(self) -> None:
        keys = self._keys = load_keys(self.state_dir)
        self._fingerprinter = CardFingerprinter(keys.fingerprint_secret)
        # PINs are checked under this device's pepper: the core gets it only now.
        self.core = Core(
            self.cfg,
            pin_check=pin_checker(keys.fingerprint_secret),
            pin_hash=pin_hasher(keys.fingerprint_secret),
        )
        self.core.load_local_pins(load_local_pins(self.state_dir))
        witness_dir = self.cfg.journal.witness_dir
        self.journal = Journal(
            self.paths.journal,
            keys,
            self.clock,
            checkpoint_every=self.cfg.journal.checkpoint_every,
            checkpoint_seconds=self.cfg.journal.checkpoint_seconds,
            site=self.cfg.site,
            device=self.cfg.device,
            witness=HeadWitness(witness_dir, keys.key_id) if witness_dir else None,
            epoch_records=self.cfg.journal.epoch_records,
            epoch_seconds=self.cfg.journal.epoch_seconds,
        )
        self.guard = GuardedJournal(self.journal, self.clock, self._journal_fault_changed)

    def _check_rollback(self) -> None:
        """Before any door decision: does anything remember a later head than the journal
        has? Then the file was put back to an older copy (R9, R10): say so, signed, in a
        record that also carries the seqs past it (docs/rollback.md)."""
        assert self.journal is not None
        from edged.device.sync.agent import receipted_head

        remembered = [h for h in (receipted_head(self.state_dir),) if h is not None]
        witness = self.journal.witness
        if witness is not None:
            seen = witness.read()
            if seen is None and witness.path.exists():
                log.error("head_witness_unreadable", path=str(witness.path))
            if seen is not None:
                remembered.append(seen)
        self._record_rollback(self.journal.find_rollback(remembered))

    def _record_rollback(self, known: Head | None) -> None:
        if known is None or self.journal is None:
            return
        try:
            rec = self.journal.append_rollback(known)
        except EdgedError as e:
            log.error("journal_write_failed", error=str(e), lost_types=[ROLLBACK])
            return
        log.error(
            "journal_rolled_back",
            found_seq=rec.fields["found_seq"],
            known_seq=known.seq,
            source=known.source,
            seq=rec.seq,
        )
        if self.sync is not None:
            self.sync.notify()
        self._observed(None, [rec.fields])

    def _central_head(self, seq: int, h: str) -> None:
        """The collector holds (seq, hash) of this device: if the journal does not contain
        it, the journal went back (or forked) behind the daemon's back."""
        assert self.journal is not None
        try:
            self._record_rollback(self.journal.find_rollback([Head(seq, h, "collector")]))
        except EdgedError as e:
            log.error("rollback_check_failed", error=str(e))

    def _cosigned(self, payload: bytes, *, kept: bool = False) -> None:
        """A checkpoint of this device that the collector checked against the records it
        holds and cosigned (issue 17). Signed by this device and by the collector, it is
        the history someone else saw: a journal with fewer records than it names went
        back, one with another tree at its size forked. Either is an alarm, recorded.
        The newest one is kept in the witness directory, outside the state directory, so
        that a journal put back while the network is down still meets it at start-up."""
        from edged.device.journal.witness import keep_cosigned
        from edged.protocol.keys import key_id_of, load_public_key
        from edged.protocol.note import NoteError, open_note, origin_of

        assert self.journal is not None and self.cfg.sync is not None
        if self.cfg.sync.collector_pubkey is None:
            return
        collector = load_public_key(self.cfg.sync.collector_pubkey)
        origin = origin_of(self.cfg.site, self.cfg.device)
        try:
            note = payload.decode()
            open_note(note, f"edged-collector/{key_id_of(collector)}", collector)
            cp = self.journal.chain.open_checkpoint(note, origin)
        except (NoteError, UnicodeDecodeError) as e:
            log.warning("cosigned_checkpoint_refused", error=str(e), kept=kept)
            return
        why = self.journal.contradicts(cp.size, cp.root)
        witness_dir = self.cfg.journal.witness_dir
        if why is None and not kept and witness_dir is not None:
            keep_cosigned(witness_dir, note, cp.size)
        last = self.journal.last_of_type("alarm.checkpoint_contradicted")
        if why is not None and not (last and last.get("size") == cp.size):  # once each
            log.warning("checkpoint_contradicted", size=cp.size, why=why)
            self._execute(
                [Record("alarm.checkpoint_contradicted", {"size": cp.size, "why": why,
                                                          "tree_size": self.journal.tree_size})],
                None,
            )  # fmt: skip

    def _check_kept_cosigned(self) -> None:
        """The newest cosigned checkpoint kept outside the state directory against the
        journal, before the network is up: a journal put back behind it is an alarm."""
        from edged.device.journal.witness import read_cosigned

        wd = self.cfg.journal.witness_dir
        kept = read_cosigned(wd) if wd is not None and self.cfg.sync is not None else None
        if kept is not None:
            self._cosigned(kept.encode(), kept=True)

    def _start_records(self) -> list[Action]:
        """``daemon.started`` with the running version and configuration hash, and, when
        either differs from the last start's, ``system.changed`` saying from what to what:
        an upgrade or an edited configuration is a record the central copy sees (R22)."""
        assert self.journal is not None
        started = {
            "version": __version__,
            "mode": "simulate" if self.simulate else "hardware",
            "config_sha256": hashlib.sha256(self.cfg.file.read_bytes()).hexdigest()[:16],
        }
        out: list[Action] = []
        last = self.journal.last_of_type("daemon.started")
        if last is not None:
            changed = {
                k: {"was": last.get(k), "now": started[k]}
                for k in ("version", "config_sha256")
                if last.get(k) != started[k]
            }
            if changed:
                out.append(Record("system.changed", {"changed": changed}))
        return [*out, Record("daemon.started", started)]

    def _build_devices(self) -> None:
        from edged.device.wiring import build_installation

        inst = build_installation(
            "sim" if self.simulate else "hardware",
            self.cfg,
            self.paths,
            self.clock,
            self._fingerprinter.fingerprint,
            **({"pcscd": self._sim_pcscd} if self.simulate else {}),
        )
        self.doors, self.cabinets, self.indicators = inst.doors, inst.cabinets, inst.indicators
        if inst.displays:
            from edged.device.display import DoorDisplays

            self.displays = DoorDisplays(inst.displays, self.cfg)
        self.card_reader, self.rig, self.devices = inst.card_reader, inst.rig, inst.devices

    def _seed_core(self) -> list[Action]:
        """Initial readings become core state; abnormal ones become records at once."""
        assert self.doors and self.cabinets
        from edged.core.events import DoorContact, Tamper

        out: list[Action] = []
        now = self.now()
        for name in self.cfg.doors:
            if not self.doors.door_closed(name):
                out += self.core.handle(DoorContact(door=name, closed=False, mono_ns=now.mono), now)
        out += self.core.seed_cabinets(self.cabinets.read_all(), now)
        if self.doors.tamper_active():
            out += self.core.handle(Tamper(active=True, mono_ns=now.mono), now)
        return out

    def _status_line(self) -> str:
        """One line for `systemctl status`: who is inside, alarms, journal head."""
        occ = self.core.snapshot()["occupancy"]
        inside = sum(len(v) for v in occ.values())
        alarm = " ALARM" if self.core.alarm_active() else ""
        f = self.journal_fault
        if f is not None:  # the watchdog ping must go on: the loop is alive
            return (
                f"{inside} inside, JOURNAL DOWN since {f['since']}"
                f" ({f['unrecorded']} records refused){alarm}"
            )
        head: int | str
        try:
            head = self.journal.head()[0] if self.journal else 0
        except EdgedError:
            head = "?"
        return f"{inside} inside, journal head {head}{alarm}"

    def now(self) -> Now:
        return self.time.now()

    def _init_wall_floor(self) -> None:
        """The newest ts recorded under a synchronised clock (the last few thousand
        records are enough: a device that was ever synchronised records often)."""
        assert self.journal is not None
        ts = self.journal.newest_synced_ts(within=5000)
        if ts is not None:
            self.time.floor = parse_ts(ts)

    # -- access list -----------------------------------------------------------------
    def _load_acl(self) -> AccessList | None:
        """The stored list, checked against this device; None (deny all) if unusable."""
        try:
            acl = load_active(self.state_dir, set(self.cfg.areas))
        except EdgedError as e:
            log.error("acl_invalid", error=str(e))
            self._execute([Record("alarm.acl_invalid", {"error": str(e)[:300]})], None)
            return None
        if acl is not None and acl.card_key != self._fingerprinter.key_id:
            msg = (
                f"access list was made for card key {acl.card_key}, this device's is"
                f" {self._fingerprinter.key_id}"
            )
            log.error("acl_invalid", error=msg)
            self._execute([Record("alarm.acl_invalid", {"error": msg})], None)
            return None
        return acl

    def reload_acl(self) -> None:
        """Re-read acl.json (after ``edged acl import``; SIGHUP); keep the old one if bad."""
        acl = self._load_acl()
        if acl is None:
            log.warning("acl_reload_kept_previous")
            return
        if self.core.acl is not None and acl.sha256 == self.core.acl.sha256:
            return
        self._execute(self.core.set_acl(acl, "file"), None)

    def _inbound(self, kind: str, payload: bytes) -> None:
        """From the sync thread: handled on the core thread, like any other event."""
        if kind == "acl":
            self.queue.put(_Call(lambda: self._apply_envelope(payload)))
        elif kind == "central_head":
            doc = json.loads(payload)
            self.queue.put(_Call(lambda: self._central_head(doc["seq"], doc["hash"])))
        elif kind == "cosigned":
            self.queue.put(_Call(lambda: self._cosigned(payload)))

    def _apply_envelope(self, payload: bytes) -> None:
        from edged.device.acl import save_active
        from edged.device.envelope import open_envelope
        from edged.protocol.keys import load_public_key
        from edged.protocol.signed import Rejected

        assert self.cfg.sync is not None
        admin = load_public_key(self.cfg.sync.admin_pubkey) if self.cfg.sync.admin_pubkey else None
        current = self.core.acl
        try:
            acl = open_envelope(
                payload,
                admin,
                site=self.cfg.site,
                device=self.cfg.device,
                now_ms=self.clock.wall_ms(),
                current=current,
                card_key=self._fingerprinter.key_id,
                areas=set(self.cfg.areas),
            )
        except Rejected as e:
            if e.reason == "already_applied":
                log.info("acl_envelope_already_applied", detail=e.detail)
                return
            self._refused(e.reason, e.detail)
            return
        save_active(self.state_dir, acl)  # atomic; the door keeps the old list until now
        self._execute(self.core.set_acl(acl, "mqtt"), None)

    def _refused(self, reason: str, detail: str) -> None:
        """A refused access list: recorded within bounds (:mod:`edged.device.refusals`)."""
        with self._cond:
            records = self.refusals.refused(
                reason, detail, time.monotonic(), format_ts(self.clock.wall_ms())
            )
            self._cond.notify_all()
        if records:
            self._execute(list(records), None)
        else:
            log.warning("acl_rejected", reason=reason, detail=detail[:200], recorded=False)

    def _flush_refusals(self) -> None:
        if records := self.refusals.due(time.monotonic(), format_ts(self.clock.wall_ms())):
            self._execute(list(records), None)

    def _restore_state(self) -> None:
        """Who is inside, escorts, wrong PINs and lock-outs, replayed from the journal:
        the records are the truth (R1, R2, R3); a restart forgives nothing."""
        assert self.journal is not None
        self.core.restore(self.journal.bodies(REPLAYED), self.now(), self.journal.boot_id)

    # -- running ---------------------------------------------------------------------
    def run(self, *, install_signals: bool = True) -> int:
        """Run until :meth:`request_stop` (or SIGTERM/SIGINT); returns an exit code."""
        if install_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGHUP, self._on_signal)
        try:
            self._lock_state_dir()
            self._open_journal()
            assert self.journal is not None
            self._check_rollback()
            self._build_devices()
            self._execute(self._start_records(), None)
            self._check_kept_cosigned()
            acl = self._load_acl()
            if acl is not None:
                self.core.adopt_acl(acl)
                self._execute(
                    [
                        Record(
                            "acl.loaded",
                            {
                                "version": acl.version,
                                "sha256": acl.sha256,
                                "people": len(acl.people),
                            },
                        )
                    ],
                    None,
                )
            self._restore_state()
            self._init_wall_floor()
            self._write_pid()
            if self.cfg.sync is not None:
                from edged.clock import read_boot_id
                from edged.device.sync.agent import SyncAgent

                self.sync = SyncAgent(
                    self.cfg.sync,
                    site=self.cfg.site,
                    device=self.cfg.device,
                    journal_path=self.journal.path,
                    state_dir=self.state_dir,
                    clock=self.clock,
                    boot_id=read_boot_id(),
                    on_inbound=self._inbound,
                    device_key=lambda: self._keys.store.current().private,
                )
                self.sync.start()
            self._execute(self._seed_core(), None)
            for dev in self.devices:
                dev.start(self.queue.put)
            if self.cfg.metrics_listen:
                from edged.device.metrics import MetricsServer

                self.metrics = MetricsServer(
                    self.cfg.metrics_listen, lambda: self.call(self.snapshot)
                )
                self.metrics.start()
            if self._want_control:
                from edged.device.control import ControlServer

                self.control = ControlServer(self.paths.control_socket, self)
                self.control.start()
            # Ready means: readers enumerated and what they said recorded.
            if self.card_reader is not None and not self.card_reader.ready.wait(10):
                log.warning("card_readers_slow_to_enumerate")
            self._loop(until_idle=True)
            # Start-up objects (config, ACL, drivers) live for the whole run: move them out
            # of the collector's reach so its full passes do not stall a door decision.
            gc.collect()
            gc.freeze()
            log.info("daemon_ready", state_dir=str(self.state_dir), simulate=self.simulate)
            self.running.set()
            sd_notify("READY=1\nSTATUS=" + self._status_line())
            self._loop()
            return 0
        except EdgedError as e:
            log.error("daemon_failed", error=str(e))
            return 2
        except Exception as e:  # a bug: logged with its traceback, doors left locked
            log.error("daemon_crashed", error=repr(e), exc_info=True)
            return 1
        finally:
            self._shutdown()

    def _loop(self, *, until_idle: bool = False) -> None:
        """Handle events until stopped (or, with ``until_idle``, until the queue is empty)."""
        assert self.journal is not None
        while True:
            deadline = self.core.next_deadline()
            if self.displays is not None:  # a result on a screen gives way on time
                shown = self.displays.next_deadline()
                deadline = shown if deadline is None else min(deadline, shown or deadline)
            mono = self.clock.mono_ns()
            # Wake for the core's next deadline, at least every 5 s for the journal's
            # checkpoint period, and in time for the systemd watchdog.
            cap = min(5.0, self._watchdog or 5.0)
            if self.refusals.open_until is not None:  # the refusal count is due then
                cap = max(0.0, min(cap, self.refusals.open_until - time.monotonic()))
            timeout = cap if deadline is None else max(0.0, min(cap, (deadline - mono) / 1e9))
            try:
                item = self.queue.get(block=not until_idle, timeout=timeout)
            except queue.Empty:
                if until_idle:
                    return
                item = None
            if item is _STOP:
                if until_idle:
                    self.queue.put(_STOP)  # keep it for the main loop
                return
            if isinstance(item, _Call):
                try:
                    item.result = item.fn()
                except BaseException as e:  # reported to the caller, never kills the loop
                    item.error = e
                item.done.set()
                continue
            reading = self.time.read()
            actions: list[Action] = [*self.time.changes(reading)]  # before what it decides
            now = self.time.now(reading)
            try:
                if item is not None:
                    actions += self.core.handle(item, now)
                actions += self.core.tick(now)
            except Exception as e:  # a core bug must not take the door down
                log.error("core_failed", event_type=type(item).__name__, error=repr(e))
                actions = [
                    Record("alarm.internal_error", {"where": "core", "error": repr(e)[:200]})
                ]
            self._execute(actions, item)
            if (
                self._watchdog is not None
                and self.running.is_set()
                and time.monotonic() >= self._next_ping
            ):
                # Pinged from the loop itself: if the core hangs, the pings stop.
                sd_notify("WATCHDOG=1\nSTATUS=" + self._status_line())
                self._next_ping = time.monotonic() + self._watchdog
            if self.guard is not None and (done := self.guard.retry()) is not None:
                log.warning("record", seq=done.seq, type=done.type, **done.fields)
            self._flush_refusals()
            try:
                self.journal.maybe_checkpoint()
            except EdgedError as e:
                log.error("checkpoint_failed", error=str(e))
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + self.cfg.journal.prune_check_seconds
                self._maybe_prune()

    def _maybe_prune(self) -> None:
        """Drop what the central copy has receipted and what is older than keep_days, in
        batches, after a signed snapshot (storage bounded after years of service). Never
        without sync, never on an unsynchronised clock, never an unreceipted record."""
        j, cfg = self.journal, self.cfg.journal
        if j is None or self.sync is None or not self.clock.synced():
            return
        receipted = self.sync.status()["acked_seq"]
        cutoff = format_ts(self.clock.wall_ms() - int(cfg.keep_days * 86_400_000))
        try:
            keep_from = min(j.first_seq_since(cutoff), receipted + 1)
            if keep_from - max(j.first_seq(), 1) < cfg.prune_batch:
                return
            snap = j.prune(keep_from, receipted)
        except EdgedError as e:
            log.error("prune_failed", error=str(e))
            return
        if snap is not None:
            log.info("journal_pruned", kept_from_seq=keep_from, snapshot_seq=snap.seq)
            self._observed(None, [snap.fields])
            self.sync.notify()

    # -- a journal that cannot record ------------------------------------------------
    @property
    def journal_fault(self) -> dict[str, Any] | None:
        """While the journal cannot record: since when, why, how many records were lost."""
        return self.guard.fault if self.guard is not None else None

    def _journal_fault_changed(self, fault: dict[str, Any] | None) -> None:
        if self.sync is not None:  # the channel that does not need the journal
            self.sync.journal_fault(fault)
            if fault is None:
                self.sync.notify()

    def _execute(self, actions: list[Action], event: Event | None) -> None:
        """Record first, then act (Invariant 2)."""
        assert self.guard is not None
        records = [a for a in actions if isinstance(a, Record)]
        committed = True
        done: list[Any] = []
        if records:
            try:
                done = self.guard.append(records)
                if self.sync is not None:
                    self.sync.notify()
            except EdgedError as e:
                committed = False
                log.error(
                    "journal_write_failed", error=str(e), lost_types=[r.type for r in records]
                )
                # What could not be recorded did not happen: no unlock, and the core forgets
                # the grant (else it would count the person inside and take a later push
                # on the still-locked door for an authorised opening).
                self.core.revert_unrecorded(actions)
                actions = [*actions, Indicate("red", True), Indicate("buzzer", True)]
        for a in actions:
            try:
                if isinstance(a, SetLock) and self.doors is not None:
                    if a.unlocked and a.needs_record and not committed:
                        log.error("unlock_refused_not_recorded", door=a.door)
                        continue
                    self.doors.set_unlocked(a.door, a.unlocked)
                elif isinstance(a, SetCabinetLock) and self.cabinets is not None:
                    if a.unlocked and a.needs_record and not committed:
                        log.error("release_refused_not_recorded", cabinet=a.cabinet)
                        continue
                    self.cabinets.set_released(a.cabinet, a.unlocked)
                elif isinstance(a, StorePin):
                    if not committed:  # not recorded: not changed (revert_unrecorded)
                        continue
                    try:
                        save_local_pin(self.state_dir, a.person, a.hash, a.set_on, a.expires)
                    except OSError as e:  # in force until a restart; said loudly
                        log.error("pin_store_failed", person=a.person, error=str(e))
                elif isinstance(a, Indicate) and self.indicators is not None:
                    self.indicators.set(a.name, a.on, a.blink)
            except EdgedError as e:
                log.error("actuator_failed", action=repr(a), error=str(e))
        # Logging comes after the actuators: it is not on the path to the relay.
        written: list[dict[str, Any]] = []
        for rec in done:
            f = rec.fields
            written.append(f)
            level = log.warning if rec.type.startswith("alarm.") else log.info
            level(
                "record",
                seq=rec.seq,
                type=rec.type,
                **{k: v for k, v in f.items() if k not in _ENVELOPE},
            )
        self._observed(event, written)
        if self.displays is not None:
            try:
                self.displays.update(written, self.core.snapshot(), self.clock.mono_ns())
            except (EdgedError, OSError) as e:  # a dead screen never stops the door
                log.error("display_failed", error=str(e))

    def append_records(self, records: list[Record]) -> None:
        """Records that no event caused (a review of the ledger), on the core thread."""
        self._execute(list(records), None)

    def _observed(self, event: Event | None, written: list[dict[str, Any]]) -> None:
        with self._cond:
            self._count += 1
            self._processed.append(Processed(self._count, event, tuple(written)))
            self._cond.notify_all()

    # -- observers -------------------------------------------------------------------
    @property
    def processed_count(self) -> int:
        with self._cond:
            return self._count

    def wait_processed(
        self, pred: Callable[[Processed], bool], *, after: int, timeout: float = 10.0
    ) -> Processed | None:
        """Wait until an event handled after step ``after`` satisfies ``pred``."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for p in self._processed:
                    if p.n > after and pred(p):
                        return p
                left = end - time.monotonic()
                if left <= 0 or self.stopped.is_set():
                    return None
                self._cond.wait(left)

    def wait_refused(self, total: int, timeout: float = 10.0) -> bool:
        """Wait until ``total`` inbound lists have been refused since start (tests)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.refusals.total >= total, timeout)

    @property
    def refused_total(self) -> int:
        with self._cond:
            return self.refusals.total

    def records_since(self, after: int) -> list[dict[str, Any]]:
        with self._cond:
            return [r for p in self._processed if p.n > after for r in p.records]

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the core thread and return its result."""
        c = _Call(fn)
        self.queue.put(c)
        if not c.done.wait(timeout):
            raise DaemonTimeoutError("the daemon did not answer in time")
        if c.error is not None:
            raise c.error
        return c.result

    def snapshot(self) -> dict[str, Any]:
        """Core state, outputs and journal head (call on the core thread)."""
        assert self.journal is not None
        journal: dict[str, Any] = {"ok": self.journal_fault is None}
        try:
            journal["head_seq"], journal["head_hash"] = self.journal.head()
        except EdgedError as e:  # status must answer most of all when storage fails
            journal.update(ok=False, error=str(e))
        if self.journal_fault is not None:
            journal["fault"] = dict(self.journal_fault)
        out: dict[str, Any] = {"core": self.core.snapshot(), "journal": journal}
        if self.rig is not None:
            out["hardware"] = self.rig.gpio.state()
        if self.card_reader is not None:
            out["readers_online"] = sorted(self.card_reader.online)
        if self.sync is not None:
            out["sync"] = self.sync.status()
        return out

    def request_stop(self) -> None:
        self.queue.put(_STOP)

    def _on_signal(self, signum: int, _frame: object) -> None:
        # The handler runs on the main thread, which may hold the queue's lock inside get():
        # putting from here could deadlock, so hand the put to a fresh thread.
        log.info("signal_received", signal=signal.Signals(signum).name)
        if signum == signal.SIGHUP:
            target: Callable[[], None] = lambda: self.queue.put(_Call(self.reload_acl))  # noqa: E731
        else:
            target = self.request_stop
        threading.Thread(target=target, name="signal", daemon=True).start()

    def _lock_state_dir(self) -> None:
        """One daemon per state directory: two would write one journal from two places.
        The lock dies with the process, so a SIGKILL leaves nothing stale behind."""
        import fcntl
        import os

        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                pid = self.pid_path.read_text().strip() or "?"
            except OSError:
                pid = "?"
            raise EdgedError(
                f"state directory {self.state_dir} is in use by PID {pid} (another edged"
                " daemon); stop it first, or give this one its own --state-dir"
            ) from None
        self._lock_fd = fd

    @property
    def pid_path(self) -> Path:
        return self.paths.pid

    def _write_pid(self) -> None:
        import os

        self.pid_path.write_text(f"{os.getpid()}\n")

    def _shutdown(self) -> None:
        self.running.clear()
        sd_notify("STOPPING=1")
        if self.pid_path.exists():
            self.pid_path.unlink()
        if self.control is not None:
            self.control.close()
        if self.metrics is not None:
            self.metrics.close()
        # Devices first: relays drop to their unpowered state (R14) before anything else.
        for dev in reversed(self.devices):
            dev.close()
        if self.guard is not None:
            try:
                self.guard.append([Record("daemon.stopped", {})])
                if self.sync is not None:
                    self.sync.notify()
            except EdgedError as e:
                log.error("journal_write_failed", error=str(e))
        if self.sync is not None:
            self.sync.close()
        if self.journal is not None:
            self.journal.close()
        if self.rig is not None:
            self.rig.close()
        if self._lock_fd is not None:
            import os

            os.close(self._lock_fd)
            self._lock_fd = None
        self.stopped.set()
        with self._cond:
            self._cond.notify_all()
        log.info("daemon_stopped")


_ENVELOPE = ENVELOPE_FIELDS - {"hash", "sig"}
