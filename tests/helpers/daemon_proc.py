"""`edged run --simulate` as a real process, with its output and a wait for its ready
line; driven through its control socket as `edged sim` drives it."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

from edged.device.control import request
from tests.conftest import EDGED

EXAMPLE = Path(__file__).parent.parent.parent / "config" / "edged.toml"


class DaemonProc:
    """A daemon process and its output, with a wait for its ready line."""

    def __init__(
        self, state_dir: Path, config: Path = EXAMPLE, prefix: tuple[str, ...] = ()
    ) -> None:
        """``prefix``: a command the daemon runs under (faketime, for one)."""
        self.state_dir = state_dir
        self.proc = subprocess.Popen(
            [*prefix, EDGED, "run", "--config", str(config), "--simulate",
             "--state-dir", str(state_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._grew = threading.Condition()
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()
        if not self.ready.wait(30) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("daemon not ready:\n" + "\n".join(self.lines[-30:]))

    def _pump(self) -> None:
        for line in self.proc.stdout:
            with self._grew:
                self.lines.append(line.rstrip())
                self._grew.notify_all()
            if '"daemon_ready"' in line:
                self.ready.set()
        self.ready.set()  # exited: stop waiting; the check below tells ready from dead

    def wait_log(self, text: str, timeout: float = 30.0) -> str:
        """The first log line containing ``text``, waiting for it to be written."""
        with self._grew:
            found: list[str] = []

            def seen() -> bool:
                found[:] = [x for x in self.lines if text in x]
                return bool(found)

            assert self._grew.wait_for(seen, timeout), f"no log line with {text!r}"
            return found[0]

    def sim(self, **req):
        resp = request(self.state_dir / "control.sock", req)
        assert resp["ok"], resp
        return resp

    def types(self, resp) -> list[str]:
        return [r["type"] for r in resp["records"]]

    def wait_state(self, pred, timeout: float) -> bool:
        """Whether the daemon's state came to satisfy ``pred`` within ``timeout`` s (for
        what changes without a record to wait for, such as a relay dropping)."""
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred(self.state()):
                return True
            time.sleep(0.05)
        return False

    def state(self):
        return self.sim(cmd="state")["state"]

    def kill(self) -> None:
        """A power cut: SIGKILL, nothing flushed, nothing said."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._t.join(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self._t.join(10)
        return self.proc.returncode

    @property
    def log(self) -> str:
        return "\n".join(self.lines)
