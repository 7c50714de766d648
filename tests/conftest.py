"""Shared fixtures: real files in a temp dir, keys in memory, a clock that moves on demand."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from edged.clock import FakeClock
from edged.journal import Journal
from edged.keys import DeviceKeys, init_keys

# Console script of the installed package, next to the interpreter running the tests.
EDGED = str(Path(sys.executable).with_name("edged"))
LONG = os.environ.get("EDGED_LONG", "") not in ("", "0")


@pytest.fixture
def keys() -> DeviceKeys:
    return DeviceKeys.generate()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    init_keys(d)
    return d


@pytest.fixture
def journal(tmp_path: Path, keys: DeviceKeys, clock: FakeClock):
    j = Journal(tmp_path / "journal.db", keys, clock, boot_id="test-boot")
    yield j
    j.close()
