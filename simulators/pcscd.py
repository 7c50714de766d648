"""Run a real pcscd with vsmartcard's vpcd driver, one virtual reader per logical name.

Each reader gets its own reader.conf entry *and its own copy of the vpcd driver
library*: vpcd keeps its sockets in per-library globals indexed by slot, so two entries
sharing one library would overwrite each other. Unplugging a reader rewrites the config
and restarts pcscd (this pcscd build does not reload serial reader configs on SIGUSR1),
which the PC/SC driver sees exactly as a reader going away.

pcscd's client socket is fixed at /run/pcscd/pcscd.comm, so one pcscd runs per machine.
vpcd listens on all interfaces: test machines only, never a device.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from edged.simulators.process import ServiceProcess, spawn
from edged.simulators.vcard import VPCD_PORT

from edged.errors import DriverInitError
from edged.log import get_logger

log = get_logger("simulators.pcscd")

VPCD_LIBRARY = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD = "pcscd"
FIRST_PORT = VPCD_PORT  # below the ephemeral ports (see vcard.py)


def reader_ports(names: Iterable[str]) -> dict[str, int]:
    """vpcd ports for logical reader names: two apart (vpcd also opens port+1), in name
    order, so a daemon's rig and a test's own pcscd agree on them."""
    return {n: FIRST_PORT + 2 * i for i, n in enumerate(sorted(names))}


def pcsc_reader_name(logical: str) -> str:
    """The PC/SC name pcscd gives the card slot of a simulated reader."""
    return f"edged-sim {logical} 00 00"


def _wait_exit(pids: list[int], timeout: float) -> None:
    """Block until the processes ``pids`` have exited or ``timeout`` passed."""
    import os
    import select
    import time

    end = time.monotonic() + timeout
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue  # already gone
        try:
            select.select([fd], [], [], max(0.0, end - time.monotonic()))
        finally:
            os.close(fd)


def describe_process(pid: int) -> str:
    """Whose a process is, for an error a person can act on: its command line, its
    systemd unit if it has one, else its parent's command."""
    proc = Path("/proc") / str(pid)
    try:
        cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return f"pid {pid}"
    try:
        cgroup = (proc / "cgroup").read_text()
        unit = next(
            (part for part in cgroup.split("/") if part.endswith((".service", ".socket"))), ""
        )
    except OSError:
        unit = ""
    if unit:
        return f"pid {pid} ({cmd}), systemd unit {unit.strip()}"
    try:
        ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        parent = (Path("/proc") / str(ppid) / "cmdline").read_bytes().replace(b"\0", b" ")
        return f"pid {pid} ({cmd}), started by pid {ppid} ({parent.decode().strip()[:120]})"
    except (OSError, ValueError, IndexError):
        return f"pid {pid} ({cmd})"


def _running_pcscd() -> list[int]:
    """Live pcscd processes (zombies waiting to be reaped do not count)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.find("(") + 1 : stat.rfind(")")]
            state = stat[stat.rfind(")") + 2 :].split(" ", 1)[0]
            if name == "pcscd" and state not in ("Z", "X"):
                out.append(int(p.name))
    return out


class PcscdHarness(ServiceProcess):
    """A pcscd process with virtual readers; a context manager with idempotent ``close()``.

    ``readers`` maps logical names to vpcd ports (slot 0 of each entry listens there;
    vpcd also opens port+1 for slot 1, so keep ports two apart).
    """

    def __init__(self, workdir: Path, readers: Mapping[str, int] | None = None) -> None:
        self.workdir = Path(workdir)
        self.readers = dict(readers or {"entry": FIRST_PORT, "exit": FIRST_PORT + 2})
        self.unplugged: set[str] = set()
        super().__init__()
        self._ready = threading.Event()
        self._log_thread: threading.Thread | None = None
        self.log_lines: list[str] = []

    @staticmethod
    def available() -> str | None:
        """None when pcscd and vpcd are installed, else what is missing."""
        if shutil.which(PCSCD) is None and not Path("/usr/sbin/pcscd").exists():
            return "pcscd is not installed (apt-get install pcscd)"
        if not VPCD_LIBRARY.exists():
            return f"{VPCD_LIBRARY} is missing (apt-get install vsmartcard-vpcd)"
        return None

    def port(self, logical: str) -> int:
        return self.readers[logical]

    def _write_config(self) -> Path:
        conf = self.workdir / "reader.conf.d"
        libs = self.workdir / "drivers"
        conf.mkdir(parents=True, exist_ok=True)
        libs.mkdir(parents=True, exist_ok=True)
        for old in conf.iterdir():
            old.unlink()
        for logical, port in self.readers.items():
            if logical in self.unplugged:
                continue
            lib = libs / f"libifdvpcd-{logical}.so"
            if not lib.exists():
                shutil.copy2(VPCD_LIBRARY, lib)
            (conf / f"{logical}.conf").write_text(
                f'FRIENDLYNAME "edged-sim {logical}"\n'
                f"DEVICENAME   /dev/null:0x{port:04X}\n"
                f"LIBPATH      {lib}\n"
                f"CHANNELID    0x{port:04X}\n"
            )
        return conf

    def start(self, timeout: float = 15.0) -> None:
        """Start pcscd and return once it says it is ready."""
        missing = self.available()
        if missing:
            raise DriverInitError(f"pcscd harness: {missing}")
        others = _running_pcscd()
        if others:
            # Often the pcscd of a daemon that was just killed, still shutting down (it
            # got SIGTERM from PR_SET_PDEATHSIG): wait for it to exit, on its pidfd.
            _wait_exit(others, timeout)
            others = _running_pcscd()
        if others:
            whose = "; ".join(describe_process(p) for p in others)
            raise DriverInitError(
                f"pcscd harness: another pcscd is running: {whose}. Only one can run per"
                " machine (its socket path is fixed): stop that one first (a system pcscd:"
                " systemctl stop pcscd.socket pcscd)"
            )
        conf = self._write_config()
        self._ready.clear()
        exe = shutil.which(PCSCD) or "/usr/sbin/pcscd"
        # -i: info level, so that "daemon ready" is printed and can be awaited.
        self._proc = spawn(
            [exe, "--foreground", "-i", "--config", str(conf)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._log_thread = threading.Thread(
            target=self._pump, args=(self._proc,), name="pcscd-log", daemon=True
        )
        self._log_thread.start()
        if not self._ready.wait(timeout):
            tail = "\n".join(self.log_lines[-10:])
            self.stop()
            raise DriverInitError(f"pcscd did not become ready in {timeout}s:\n{tail}")
        try:
            self._wait_listed(timeout)
        except DriverInitError:
            self.stop()  # never leave a pcscd behind: the next one could not start
            raise
        log.info(
            "pcscd_started", pid=self._proc.pid, readers=sorted(set(self.readers) - self.unplugged)
        )

    def _wait_listed(self, timeout: float) -> None:
        """Until pcscd lists every plugged reader. "daemon ready" comes before the last of
        several serial readers is up, and a reader missing from a driver's first listing
        is rightly an alarm (reader_lost): with five readers a daemon started at once
        sometimes saw one missing."""
        import time

        try:
            from smartcard import scard
        except ImportError:
            return  # nothing here will ask pcscd for readers
        want = {pcsc_reader_name(n) for n in self.readers if n not in self.unplugged}
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if rv == scard.SCARD_S_SUCCESS:
                try:
                    rv, names = scard.SCardListReaders(ctx, [])
                finally:
                    scard.SCardReleaseContext(ctx)
                if rv == scard.SCARD_S_SUCCESS and want <= set(names):
                    return
            time.sleep(0.05)  # pcscd announces no event for this: its list is polled
        raise DriverInitError(f"pcscd did not list {sorted(want)} within {timeout}s")

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log_lines.append(line.rstrip())
            if len(self.log_lines) > 500:
                del self.log_lines[:100]
            if "daemon ready" in line:
                self._ready.set()

    def _after_stop(self) -> None:
        if self._log_thread is not None:
            self._log_thread.join(timeout=5)

    def unplug(self, logical: str) -> None:
        """Take a reader away, as pulling its USB cable would."""
        if logical not in self.readers:
            raise KeyError(f"no simulated reader {logical!r}; have {sorted(self.readers)}")
        self.unplugged.add(logical)
        self.restart()

    def plug(self, logical: str) -> None:
        """Put a reader back."""
        if logical not in self.readers:
            raise KeyError(f"no simulated reader {logical!r}; have {sorted(self.readers)}")
        self.unplugged.discard(logical)
        self.restart()


def missing_stack() -> str | None:
    """What the simulated readers lack on this machine (pcscd, vpcd), or None: the
    preflight ``edged doctor`` runs for a simulated installation."""
    return PcscdHarness.available()
