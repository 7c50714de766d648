"""A door's second day and after: the daemon, as `edged run` starts it, must start again in
every state its key store can be left in by its own epoch changes, by a stop, or by a
power cut half-way through a change (R9, R14). Before the fix, every start after the
first epoch change refused with "no device key" (the identity's private half is erased
by design at that change)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edged.clock import FakeClock
from edged.device.journal import Journal
from edged.device.keys import has_identity, init_keys, load_keys
from edged.device.keystore import FileKeyStore
from edged.device.paths import EPOCH_KEY_FILE, NEXT_KEY_FILE, PUBLIC_KEY_FILE, SIGNING_KEY_FILE
from tests.conftest import EDGED, EXAMPLE_CONFIG, enrol
from tests.helpers.daemon_proc import DaemonProc

pytestmark = pytest.mark.integration


def _config(tmp_path: Path) -> Path:
    """The example configuration, a new signing key every 10 records."""
    text = EXAMPLE_CONFIG.read_text()
    assert "\nepoch_records = 100000 " in text
    cfg = tmp_path / "edged.toml"
    cfg.write_text(text.replace("\nepoch_records = 100000 ", "\nepoch_records = 10 ", 1))
    return cfg


def _serve_and_stop(state: Path, cfg: Path, presses: int) -> list[str]:
    """Start the daemon, press the exit button ``presses`` times (a record each), stop it
    cleanly; the files of the key store afterwards."""
    d = DaemonProc(state, cfg)
    try:
        for _ in range(presses):
            assert d.types(d.sim(cmd="exit-button")) == ["door.exit_request"]
    finally:
        assert d.stop() == 0, d.log
    return sorted(p.name for p in state.iterdir() if "ed25519" in p.name)


def _verify(state: Path) -> None:
    out = subprocess.run([EDGED, "verify", "--db", str(state / "journal.db")],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_door_starts_again_after_each_epoch_change(tmp_path):
    """R9, R14: three days of a door whose key changes every 10 records, stopped and
    started each day: every start serves, the identity's private half is gone after the
    first change, and the journal verifies across the epochs."""
    state, cfg = tmp_path / "state", _config(tmp_path)
    init_keys(state)
    enrol(state, cfg)
    seen = []
    for _day in range(3):
        seen.append(_serve_and_stop(state, cfg, presses=12))
        _verify(state)
    assert SIGNING_KEY_FILE not in seen[0] and EPOCH_KEY_FILE in seen[0], seen
    assert has_identity(state) and (state / PUBLIC_KEY_FILE).exists()
    assert load_keys(state).store.current().epoch >= 3


def _cut_change(state: Path, *, committed: bool, monkeypatch) -> None:
    """Leave the key store as a power cut leaves it: the next key made (``committed``:
    and its certificate in the journal) but the key store never told."""

    def lost_power(self, wire):
        raise KeyboardInterrupt("power lost")

    keys = load_keys(state)
    epoch = keys.store.current().epoch
    if committed:
        monkeypatch.setattr(FileKeyStore, "commit", lost_power)
        j = Journal(state / "journal.db", keys, FakeClock(), boot_id="cut", epoch_records=10)
        with pytest.raises(KeyboardInterrupt):
            for i in range(20):
                j.append("door.exit_request", door="main", n=i)
        j.close()
        monkeypatch.undo()
    else:
        keys.store.prepare(epoch + 1)
    assert (state / NEXT_KEY_FILE).exists()


@pytest.mark.parametrize("first_day", [True, False], ids=["epoch0", "later"])
@pytest.mark.parametrize("committed", [False, True], ids=["prepared", "certified"])
def test_the_door_starts_after_a_power_cut_in_an_epoch_change(
    tmp_path, monkeypatch, first_day, committed
):
    """R9, R14: the power cut after the next key was made, or after its certificate was
    committed but before the key store was told, on the first change (the identity's
    private half still there) and on a later one (only its public half): the next start
    serves, finishes or drops the change, and the journal verifies."""
    state, cfg = tmp_path / "state", _config(tmp_path)
    init_keys(state)
    enrol(state, cfg)
    if not first_day:
        _serve_and_stop(state, cfg, presses=12)
        assert not (state / SIGNING_KEY_FILE).exists()
    _cut_change(state, committed=committed, monkeypatch=monkeypatch)
    _serve_and_stop(state, cfg, presses=3)
    _verify(state)
    assert not (state / NEXT_KEY_FILE).exists() or not committed


def test_a_door_never_given_keys_is_refused_and_its_advice_works(tmp_path):
    """Without any key the daemon refuses with the command that makes one, and that
    command, run as advised, makes a door that starts."""
    state, cfg = tmp_path / "state", _config(tmp_path)
    state.mkdir(mode=0o700)
    run = [EDGED, "run", "--config", str(cfg), "--state-dir", str(state)]
    out = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "edged keys init --state-dir" in out.stderr, out.stderr
    advice = out.stderr.split("create one with: ")[1].strip().split()
    assert subprocess.run([EDGED, *advice[1:]], capture_output=True, timeout=30).returncode == 0
    enrol(state, cfg)
    _serve_and_stop(state, cfg, presses=1)
