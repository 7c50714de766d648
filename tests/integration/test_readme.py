"""The README's walk-through, run as written: it must get Yamada through the door (it
used to stop at the purpose prompt, deny `purpose_invalid`, and run `door open|close` as a
shell pipe)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_pcscd

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


def blocks() -> list[str]:
    """The shell blocks of the README's "Running it yourself" section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Running it yourself") : text.index("## Installing the package")]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def _no_pcscd_left(state: Path) -> None:
    """The walk's daemon took its simulated pcscd with it (only one pcscd can run on a
    machine: a leftover one would stop every later test)."""
    from edged.simulators.pcscd import _running_pcscd, _wait_exit

    ours = [
        pid
        for pid in _running_pcscd()
        if str(state) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    ]
    if ours:
        _wait_exit(ours, 15)
    for pid in [p for p in ours if Path(f"/proc/{p}").exists()]:
        # Still there: kill it so that later tests can start theirs, and say so.
        print(f"warning: the walk's pcscd (pid {pid}) outlived its daemon; killed")
        os.kill(pid, signal.SIGKILL)


def run_blocks(
    script: str, state: Path, timeout: float, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """README shell, as written but for the state directory and the installed edged; the
    daemon it starts in the background never outlives it, nor does its pcscd. ``prefix``
    runs the shell under another command (``faketime``)."""
    assert "|" not in script.replace("||", ""), "one command per line: no shell pipes"
    script = script.replace("S=/tmp/edged", f"S={state}").replace(
        ".venv/bin/edged", str(Path(sys.executable).with_name("edged"))
    )
    wrapped = f"set -e\ntrap 'kill $(cat {state}/edged.pid) 2>/dev/null || true' EXIT\n{script}"
    p = subprocess.run(
        [*prefix, "bash", "-c", wrapped], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    _no_pcscd_left(state)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def test_the_readme_walk_gets_through_the_door(tmp_path):
    """R1, R4, R6: the walk ends with door.granted, the purpose and carry-in asked in
    words, the lock check confirmed by the last leaver, a ledger and a verified journal."""
    require_pcscd()
    state = tmp_path / "edged"
    out = run_blocks(blocks()[0], state, timeout=180).stdout
    assert "-> keypad main: enter the purpose (1 payroll, 2 year-end-adjustment, 3 audit)" in out
    assert "-> keypad main: declare what you carry in (0 none, 1 approved_pc" in out
    assert "door.granted" in out and "purpose_invalid" not in out
    assert "lockcheck.confirmed" in out
    assert "OK:" in out  # edged verify
    assert (state / "ledger.html").exists()


def test_the_readme_has_more_to_press_and_it_works(tmp_path):
    """R2, R3, R8: the second block, after the walk: exit button, cabinet, tamper, a
    reader unplugged and back, the server room with the PIN, state, doctor --simulate."""
    require_pcscd()
    walk, more = blocks()[:2]
    out = run_blocks(walk + more, tmp_path / "edged", timeout=240).stdout
    assert "door.exit_request" in out and "alarm.tamper" in out
    assert "-> keypad server: enter the PIN" in out
    assert out.count("door.granted") >= 2  # the walk's, and the server room's
    assert "OK   gpio: simulated" in out
