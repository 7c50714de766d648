"""The daemon: wires drivers -> core -> journal, and executes what the core decides.

One thread (the caller of :meth:`Daemon.run`) owns the core, the journal and the
outputs. Driver threads and the control socket only put items on the queue
(Invariant 1). The loop blocks on that queue until the next event or the core's next
deadline; it never sleeps.
"""

from __future__ import annotations

import gc
import json
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edged.clock import Clock, SystemClock
from edged.core import Core, Indicate, Record
from edged.core.actions import Action
from edged.core.events import Event
from edged.core.replay import REPLAYED
from edged.core.state import Now
from edged.device.acl import (
    AccessList,
)
from edged.device.clockwatch import ClockWatch
from edged.device.config import Config
from edged.device.hardware import CabinetSensors, Device, DoorIO, Indicators
from edged.device.history import History, start_records
from edged.device.journal import Journal
from edged.device.journal.guard import GuardedJournal
from edged.device.journal.prune import prune_receipted
from edged.device.keys import load_keys
from edged.device.lists import AccessLists
from edged.device.notify import sd_notify
from edged.device.observers import Observers
from edged.device.outputs import Outputs, log_written
from edged.device.paths import StatePaths
from edged.device.statelock import StateLock
from edged.device.status import journal_state, status_line
from edged.device.upkeep import Upkeep
from edged.device.wiring import (
    Installation,
    build_installation,
    device_core,
    device_journal,
    device_sync,
    seed_readings,
)
from edged.errors import DaemonTimeoutError, EdgedError
from edged.log import get_logger
from edged.protocol.privacy import CardFingerprinter
from edged.protocol.records import parse_ts

log = get_logger("daemon")

_STOP = object()


@dataclass
class _Call:
    """A function to run on the core thread (control-socket queries); result via ``done``."""

    fn: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


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
        self.outputs = Outputs(self.state_dir)  # acts once the hardware is built
        self.installation: Installation | None = None
        self.card_reader: Any = None
        self.journal: Journal | None = None
        self.history: History | None = None  # once the journal is open
        # While the journal cannot record: since when, why, how many records were lost.
        self.guard: GuardedJournal | None = None  # the journal, accounting for faults
        self.lock = StateLock(self.paths)
        self.time = ClockWatch(self.clock)
        self.sync: Any = None
        self.metrics: Any = None
        # The control socket always answers state queries (edged status); the hardware
        # commands behind `edged sim` exist only with --simulate.
        self._want_control = True if control_socket is None else control_socket
        self.control: Any = None
        self.running = threading.Event()
        self.upkeep = Upkeep(config)
        self.stopped = threading.Event()
        # What the loop did, for the control socket and tests (edged.device.observers).
        self.observers = Observers(self.stopped, self._refused)
        self.lists: AccessLists | None = None  # once the card key is known

    # -- set-up ----------------------------------------------------------------------
    def _open_journal(self) -> None:
        keys = self._keys = load_keys(self.state_dir)
        self._fingerprinter = CardFingerprinter(keys.fingerprint_secret)
        self.lists = AccessLists(self.cfg, self.state_dir, self._fingerprinter.key_id, self.clock)
        self.core = device_core(self.cfg, keys, self.paths)
        self.journal = device_journal(self.cfg, self.paths, keys, self.clock)
        self.guard = GuardedJournal(self.journal, self.clock, self._journal_fault_changed)

    def _rolled_back(self, rec: Any) -> None:
        """A rollback record the journal appended (:mod:`edged.device.history`)."""
        if rec is None:
            return
        if self.sync is not None:
            self.sync.notify()
        self._observed(None, [rec.fields])

    def _build_devices(self) -> None:
        inst = build_installation(
            "sim" if self.simulate else "hardware",
            self.cfg,
            self.paths,
            self.clock,
            self._fingerprinter.fingerprint,
            **({"pcscd": self._sim_pcscd} if self.simulate else {}),
        )
        self.installation = inst
        self.doors, self.cabinets, self.indicators = inst.doors, inst.cabinets, inst.indicators
        o = self.outputs
        o.doors, o.cabinets, o.indicators = inst.doors, inst.cabinets, inst.indicators
        if inst.displays:
            from edged.device.display import DoorDisplays

            self.displays = DoorDisplays(inst.displays, self.cfg)
        self.card_reader, self.rig, self.devices = inst.card_reader, inst.rig, inst.devices

    def _status_line(self) -> str:
        return status_line(self.core, self.journal, self.journal_fault)

    def now(self) -> Now:
        return self.time.now()

    def _stored_acl(self) -> AccessList | None:
        assert self.lists is not None
        loaded = self.lists.stored()
        self._record(loaded.records)
        return loaded.acl

    def reload_acl(self) -> None:
        """Re-read acl.json (after ``edged acl import``; SIGHUP); keep the old one if bad."""
        acl = self._stored_acl()
        if acl is None:
            log.warning("acl_reload_kept_previous")
            return
        if self.core.acl is not None and acl.sha256 == self.core.acl.sha256:
            return
        self._execute(self.core.set_acl(acl, "file"), None)

    def _inbound(self, kind: str, payload: bytes) -> None:
        """From the sync thread: handled on the core thread, like any other event."""
        hist = self.history
        assert hist is not None  # sync starts after the journal is open
        if kind == "acl":
            self.queue.put(_Call(lambda: self._apply_envelope(payload)))
        elif kind == "central_head":
            doc = json.loads(payload)
            seq, h = doc["seq"], doc["hash"]
            self.queue.put(_Call(lambda: self._rolled_back(hist.central_head(seq, h))))
        elif kind == "cosigned":
            self.queue.put(_Call(lambda: self._record(hist.cosigned(payload))))

    def _apply_envelope(self, payload: bytes) -> None:
        assert self.lists is not None
        with self.observers.cond:  # observers wait on the refusal count
            loaded = self.lists.envelope(payload, self.core.acl, time.monotonic())
            self.observers.cond.notify_all()
        self._record(loaded.records)
        if loaded.acl is not None:
            self._execute(self.core.set_acl(loaded.acl, "mqtt"), None)

    def _restore_state(self) -> None:
        """Who is inside, escorts, wrong PINs and lock-outs, replayed from the journal:
        the records are the truth (R1, R2, R3); a restart forgives nothing."""
        assert self.journal is not None
        self.core.restore(self.journal.bodies(REPLAYED), self.now(), self.journal.boot_id)

    # -- running ---------------------------------------------------------------------
    def run(self, *, install_signals: bool = True) -> int:
        """Run until :meth:`request_stop` (or SIGTERM/SIGINT); returns an exit code."""
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, self._on_signal)
        try:
            self._start()
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

    def _start(self) -> None:
        """In order: the state directory is ours, the journal's history is checked before
        any door decision, the hardware is read, the list and who is inside restored;
        then sync, the drivers and the sockets start."""
        from edged.device.sync.state import receipted_head

        self.lock.acquire()
        self._open_journal()
        assert self.journal is not None
        self.history = History(self.cfg, self.journal)
        self._rolled_back(self.history.at_start(receipted_head(self.state_dir)))
        self._build_devices()
        self._execute(start_records(self.cfg, self.simulate, self.journal), None)
        self._record(self.history.kept_cosigned())
        acl = self._stored_acl()
        if acl is not None:
            self.core.adopt_acl(acl)
            f = {"version": acl.version, "sha256": acl.sha256, "people": len(acl.people)}
            self._execute([Record("acl.loaded", f)], None)
        self._restore_state()
        # Decisions never take the time as earlier than the newest record made under a
        # synchronised clock (the last few thousand: a synchronised device records often).
        if (ts := self.journal.newest_synced_ts(within=5000)) is not None:
            self.time.floor = parse_ts(ts)
        self.lock.write_pid()
        if self.cfg.sync is not None:
            key = self._keys.store.current
            self.sync = device_sync(self.cfg, self.journal, self.paths, self.clock,
                                    self._inbound, lambda: key().private)  # fmt: skip
            self.sync.start()
        assert self.installation is not None
        self._execute(seed_readings(self.core, self.cfg, self.installation, self.now()), None)
        for dev in self.devices:
            dev.start(self.queue.put)
        if self.cfg.metrics_listen:
            from edged.device.metrics import MetricsServer

            self.metrics = MetricsServer(self.cfg.metrics_listen, lambda: self.call(self.snapshot))
            self.metrics.start()
        if self._want_control:
            from edged.device.control import ControlServer

            self.control = ControlServer(self.paths.control_socket, self)
            self.control.start()

    def _loop(self, *, until_idle: bool = False) -> None:
        """Handle events until stopped (or, with ``until_idle``, until the queue is empty)."""
        assert self.journal is not None
        while True:
            deadline = self.core.next_deadline()
            if self.displays is not None:  # a result on a screen gives way on time
                shown = self.displays.next_deadline()
                deadline = shown if deadline is None else min(deadline, shown or deadline)
            # Wake for the core's next deadline, and for what upkeep needs.
            cap = self.upkeep.wait_cap(self.lists.refusals.open_until if self.lists else None)
            wait = (deadline - self.clock.mono_ns()) / 1e9 if deadline is not None else cap
            timeout = max(0.0, min(cap, wait))
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
            if self.running.is_set():
                self.upkeep.ping(self._status_line)
            self.upkeep.journal(self.journal, self.guard)
            if self.lists is not None:
                self._record(self.lists.refusals_due(time.monotonic()))
            if self.upkeep.prune_due():
                self._maybe_prune()

    def _maybe_prune(self) -> None:
        """Storage bounded after years of service (:func:`prune_receipted`): never
        without sync, never on an unsynchronised clock, never an unreceipted record."""
        if self.journal is None or self.sync is None or not self.clock.synced():
            return
        cfg = self.cfg.journal
        snap = prune_receipted(self.journal, cfg.keep_days, cfg.prune_batch,
                               self.sync.status()["acked_seq"], self.clock.wall_ms())  # fmt: skip
        if snap is not None:
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
        self.outputs.act(actions, committed)
        # Logging comes after the actuators: it is not on the path to the relay.
        written = log_written(done)
        self._observed(event, written)
        if self.displays is not None:
            try:
                self.displays.update(written, self.core.snapshot(), self.clock.mono_ns())
            except (EdgedError, OSError) as e:  # a dead screen never stops the door
                log.error("display_failed", error=str(e))

    def _record(self, actions: list[Action]) -> None:
        """Actions no event caused (none: no step for the observers to count)."""
        if actions:
            self._execute(actions, None)

    def append_records(self, records: list[Record]) -> None:
        """Records that no event caused (a review of the ledger), on the core thread."""
        self._execute(list(records), None)

    def _observed(self, event: Event | None, written: list[dict[str, Any]]) -> None:
        self.observers.observed(event, written)

    def _refused(self) -> int:
        return self.lists.refusals.total if self.lists is not None else 0

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
        out: dict[str, Any] = {
            "core": self.core.snapshot(),
            "journal": journal_state(self.journal, self.journal_fault),
        }
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

    def _shutdown(self) -> None:
        self.running.clear()
        sd_notify("STOPPING=1")
        self.lock.remove_pid()
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
        self.lock.release()
        self.stopped.set()
        self.observers.wake()
        log.info("daemon_stopped")
