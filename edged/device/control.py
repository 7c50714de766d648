"""The simulation control socket: ``edged sim ...`` talks to a ``--simulate`` daemon here.

One JSON object per line each way, on a Unix socket in the state directory (0600 in a
0700 directory). Every request is untrusted input: it is size-limited, type-checked and
answered with ``{"ok": false, "error": ...}`` when wrong; nothing a client sends can stop
the daemon. Commands act only on the simulated hardware, exactly as a person at the door
would, and wait until the daemon has handled the resulting event, so the answer carries
the records it produced.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edged.core.events import (
    CabinetChanged,
    CardAuthFailed,
    CardPresented,
    CardRemoved,
    CardUnreadable,
    DoorContact,
    ExitButton,
    KeypadKey,
    Presence,
    ReaderFound,
    ReaderLost,
    Tamper,
)
from edged.core.policy import CARRY_IN
from edged.errors import ControlError, EdgedError
from edged.log import get_logger

if TYPE_CHECKING:
    from edged.device.daemon import Daemon
    from edged.device.observers import Processed

log = get_logger("control")

MAX_REQUEST = 4096
WAIT = 10.0


def _str(req: dict[str, Any], key: str, default: str | None = None, maxlen: int = 64) -> str:
    v = req.get(key, default)
    if not isinstance(v, str) or not v or len(v) > maxlen:
        raise ControlError(f"{key!r} must be a string of 1..{maxlen} characters")
    return v


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST + 1)
        try:
            if len(line) > MAX_REQUEST:
                raise ControlError(f"request longer than {MAX_REQUEST} bytes")
            try:
                req = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                raise ControlError("request is not one JSON object on one line") from None
            if not isinstance(req, dict):
                raise ControlError("request must be a JSON object")
            resp = {"ok": True, **self.server.controller.dispatch(req)}
        except ControlError as e:
            resp = {"ok": False, "error": str(e)}
        except Exception as e:  # a failing command must not kill the server thread
            log.error("control_command_failed", error=repr(e))
            resp = {"ok": False, "error": f"internal error: {e!r}"}
        self.wfile.write(json.dumps(resp, ensure_ascii=False).encode() + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    controller: SimController


class SimController:
    """Carries out simulation commands against a running daemon's rig."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self._lock = threading.Lock()  # one physical action at a time, as at a real door

    def dispatch(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = _str(req, "cmd")
        handler = getattr(self, "cmd_" + cmd.replace("-", "_"), None)
        if handler is None:
            raise ControlError(f"unknown command {cmd!r}")
        with self._lock:
            return handler(req)

    # helpers
    @property
    def rig(self) -> Any:
        if self.d.rig is None:
            raise ControlError("the daemon is not running with --simulate")
        return self.d.rig

    def _door(self, req: dict[str, Any]) -> str:
        """The door named in the request; the first configured door by default."""
        doors = list(self.d.cfg.doors)
        name = req.get("door") or doors[0]
        if name not in self.d.cfg.doors:
            raise ControlError(f"no door {name!r}; have {sorted(doors)}")
        return name

    def _await(self, before: int, pred: Any, what: str) -> Processed:
        p = self.d.observers.wait_processed(pred, after=before, timeout=WAIT)
        if p is None:
            raise ControlError(f"the daemon did not report {what} within {WAIT:.0f}s")
        return p

    def _done(self, before: int, **extra: Any) -> dict[str, Any]:
        return {"records": self.d.observers.records_since(before), "asks": self._asks(), **extra}

    def _asks(self) -> list[str]:
        """What each keypad waits for now, in words (the demo's prompts, for `edged sim`)."""
        snap = self.d.call(self.d.core.snapshot)
        out = []
        for door, pr in sorted(snap["prompts"].items()):
            out.append(f"keypad {door}: {self._ask(door, pr['step'])}")
        if snap.get("waiting_visitors"):
            for door in snap["waiting_visitors"]:
                out.append(f"door {door}: a visitor waits for an escort's card")
        return out

    def _ask(self, door: str, step: str) -> str:
        area = self.d.cfg.areas[self.d.cfg.doors[door].area]
        if step == "purpose":
            codes = ", ".join(f"{k} {v}" for k, v in sorted(area.purposes.items()))
            return f"enter the purpose ({codes}), then #"
        if step == "carry_in":
            codes = ", ".join(f"{k} {v}" for k, v in sorted(CARRY_IN.items()))
            return f"declare what you carry in ({codes}), then #"
        if step == "lockcheck":
            how = "the PIN, then #" if area.lockcheck_pin else "#"
            return f"last one out: check every cabinet is locked, then confirm with {how}"
        if step == "carry_out":
            codes = ", ".join(f"{k} {v}" for k, v in sorted(CARRY_IN.items()))
            return f"declare what you take out ({codes}), then #"
        if step == "carry_out_approval":
            return "taking it out needs the card of someone inside who approves"
        return {
            "pin": "enter the PIN, then # (* clears)",
            "admin": "admin card: # to go on, 0# to reset the area's occupancy",
        }.get(step, f"waits for {step}")

    # commands
    def cmd_review(self, req: dict[str, Any]) -> dict[str, Any]:
        """Record that the ledger of a period was reviewed: who, how, with what result
        (R20): a signed ``ledger.reviewed`` record in this door's journal."""
        import datetime as _dt

        from edged.core import Record
        from edged.ledger import REVIEW_FIELDS
        from edged.protocol.privacy import contains_individual_number

        fields = {k: _str(req, k, maxlen=500) for k in REVIEW_FIELDS}
        try:
            if _dt.date.fromisoformat(fields["to"]) < _dt.date.fromisoformat(fields["from"]):
                raise ValueError("to is before from")
        except ValueError as e:
            raise ControlError(f"review: from/to: {e} (YYYY-MM-DD)") from None
        if not fields["reviewer"] or not fields["method"]:
            raise ControlError("review: reviewer and method are required")
        if any(contains_individual_number(v) for v in fields.values()):
            raise ControlError("review: a field looks like it holds an Individual Number")
        before = self.d.observers.processed_count
        self.d.call(lambda: self.d.append_records([Record("ledger.reviewed", fields)]))
        return self._done(before)

    def cmd_tap(self, req: dict[str, Any]) -> dict[str, Any]:
        reader = _str(req, "reader", "entry")
        try:
            opt = {k: _str(req, k) for k in ("kind", "behaviour", "proof") if req.get(k)}
            card = self.rig.card_as_asked(_str(req, "card", maxlen=200), reader, **opt)
        except (ValueError, KeyError) as e:
            raise ControlError(str(e)) from None
        before = self.d.observers.processed_count
        try:
            card.insert()
        except OSError as e:
            raise ControlError(f"reader {reader!r} is not accepting cards ({e})") from None
        try:
            self._await(
                before,
                lambda p: (
                    isinstance(p.event, CardPresented | CardUnreadable | CardAuthFailed)
                    and p.event.reader == reader
                ),
                f"a card on {reader!r}",
            )
        finally:
            mid = self.d.observers.processed_count
            card.remove()
        self._await(
            mid,
            lambda p: isinstance(p.event, CardRemoved) and p.event.reader == reader,
            f"the card leaving {reader!r}",
        )
        return self._done(before)

    def cmd_door(self, req: dict[str, Any]) -> dict[str, Any]:
        door = self._door(req)
        action = _str(req, "action")
        if action not in ("open", "close"):
            raise ControlError("action must be open or close")
        closed = action == "close"
        before = self.d.observers.processed_count
        if self.rig.gpio.doors.door_closed(door) == closed:
            return self._done(before, note=f"door {door} is already {action}d")
        self.rig.gpio.set_door(door, closed=closed)
        self._await(
            before,
            lambda p: isinstance(p.event, DoorContact) and p.event.door == door,
            "the door contact",
        )
        return self._done(before)

    def cmd_exit_button(self, req: dict[str, Any]) -> dict[str, Any]:
        door = self._door(req)
        before = self.d.observers.processed_count
        try:
            self.rig.gpio.press_exit(door)
        except ValueError as e:
            raise ControlError(str(e)) from None
        self._await(before, lambda p: isinstance(p.event, ExitButton), "the exit button")
        return self._done(before)

    def cmd_cabinet(self, req: dict[str, Any]) -> dict[str, Any]:
        name = _str(req, "name")
        action = _str(req, "action")
        if action not in ("open", "close"):
            raise ControlError("action must be open or close")
        locked = action == "close"
        before = self.d.observers.processed_count
        try:
            current = self.rig.gpio.cabinets.read_all()[name]
        except KeyError:
            raise ControlError(f"no cabinet {name!r}; have {sorted(self.d.cfg.cabinets)}") from None
        if current == locked:
            return self._done(before, note=f"cabinet {name} is already {action}d")
        self.rig.gpio.set_cabinet(name, locked=locked)
        self._await(
            before,
            lambda p: isinstance(p.event, CabinetChanged) and p.event.cabinet == name,
            "the cabinet switch",
        )
        return self._done(before)

    def cmd_keys(self, req: dict[str, Any]) -> dict[str, Any]:
        keys = _str(req, "keys", maxlen=32)
        door = self._door(req)
        before = self.d.observers.processed_count
        try:
            self.rig.press_keys(door, keys)
        except (ValueError, EdgedError) as e:
            raise ControlError(str(e)) from None
        n = len(keys)

        def all_keys(p: Processed) -> bool:
            steps = self.d.observers.steps_since(before)
            return isinstance(p.event, KeypadKey) and sum(
                isinstance(q.event, KeypadKey) for q in steps
            ) >= n

        self._await(before, all_keys, f"{n} key(s)")
        return self._done(before)

    def cmd_tamper(self, req: dict[str, Any]) -> dict[str, Any]:
        active = req.get("active", True)
        if not isinstance(active, bool):
            raise ControlError("active must be true or false")
        before = self.d.observers.processed_count
        if self.rig.gpio.doors.tamper_active() == active:
            return self._done(before, note="tamper switch already in that state")
        try:
            self.rig.gpio.set_tamper(active)
        except ValueError as e:
            raise ControlError(str(e)) from None
        self._await(before, lambda p: isinstance(p.event, Tamper), "the tamper switch")
        return self._done(before)

    def cmd_motion(self, req: dict[str, Any]) -> dict[str, Any]:
        area, moving = _str(req, "area"), req.get("active", True)
        if not isinstance(moving, bool):
            raise ControlError("active must be true or false")
        before = self.d.observers.processed_count
        if self.rig.gpio.presence.moving().get(area) == moving:
            return self._done(before, note="the presence sensor already reads that")
        try:
            self.rig.gpio.set_motion(area, moving)
        except ValueError as e:
            raise ControlError(str(e)) from None
        self._await(before, lambda p: isinstance(p.event, Presence), "the presence sensor")
        return self._done(before)

    def cmd_reader(self, req: dict[str, Any]) -> dict[str, Any]:
        reader = _str(req, "reader")
        action = _str(req, "action")
        if reader not in self.d.cfg.readers:
            raise ControlError(f"no reader {reader!r}; have {sorted(self.d.cfg.readers)}")
        before = self.d.observers.processed_count
        if action == "unplug":
            self.rig.pcscd.unplug(reader)
            self._await(
                before,
                lambda p: isinstance(p.event, ReaderLost) and p.event.reader == reader,
                f"reader {reader!r} lost",
            )
        elif action == "plug":
            self.rig.pcscd.plug(reader)
            self._await(
                before,
                lambda p: isinstance(p.event, ReaderFound) and p.event.reader == reader,
                f"reader {reader!r} back",
            )
        else:
            raise ControlError("action must be unplug or plug")
        return self._done(before)

    def cmd_wait_for(self, req: dict[str, Any]) -> dict[str, Any]:
        """Wait until the daemon writes a record of a given type (timers, alarms)."""
        rtype = _str(req, "type")
        timeout = req.get("timeout", WAIT)
        if not isinstance(timeout, int | float) or not 0 < timeout <= 120:
            raise ControlError("timeout must be 0..120 seconds")
        before = self.d.observers.processed_count
        p = self.d.observers.wait_processed(
            lambda p: any(r["type"] == rtype for r in p.records),
            after=before,
            timeout=float(timeout),
        )
        if p is None:
            raise ControlError(f"no {rtype} record within {timeout}s")
        return self._done(before)

    def cmd_state(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"state": self.d.call(self.d.snapshot)}

    def cmd_lcd(self, req: dict[str, Any]) -> dict[str, Any]:
        """What each door's display shows now (as its ROM shows it)."""
        if self.d.displays is None:
            raise ControlError("no [displays] in the configuration")
        return {"lcd": self.d.call(self.d.displays.text)}


class ControlServer:
    """The Unix-socket server; ``close()`` is idempotent."""

    def __init__(self, path: Path, daemon: Daemon) -> None:
        self.path = Path(path)
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()  # left over from a crash; the state dir is ours (0700)
        self._server = _Server(str(self.path), _Handler)
        os.chmod(self.path, 0o600)
        self._server.controller = SimController(daemon)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="control", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._thread = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def request(path: Path, req: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to a daemon's control socket and return its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)
