"""Processes that live on another day: libfaketime moves the wall clock of every process
started under it (the CLI, the daemon, its pcscd, a collector); the monotonic clock stays
real, as the door's timers need it to be."""

from __future__ import annotations

import datetime as dt
import glob
import shutil
import time

import pytest

from tests.helpers.examples import SITE_TZ


def faketime(day: dt.date, at: dt.time = dt.time(10, 0)) -> tuple[str, ...]:
    """Every process under it lives on ``day`` at ``at`` (10:00) in Tokyo, its clock running on.

    A relative offset (not faketime's "@" start time), so that the processes started one
    after another share one clock, as on a real machine."""
    target = dt.datetime.combine(day, at, SITE_TZ).timestamp()
    libs = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if shutil.which("faketime") is None or not libs:
        pytest.fail("faketime missing: run EDGED_TEST_EXTRAS=1 scripts/bootstrap.sh as root")
    # The library preloaded by env, which execs the command: the process started is the
    # command itself (the faketime binary would stay between, as its parent, and a test
    # that kills "the daemon" would kill only the wrapper).
    # FAKETIME_DONT_FAKE_MONOTONIC: libfaketime would move the monotonic clock too, and
    # its wrapped condition waits then never time out (the held-open alarm never came).
    return ("env", "FAKETIME_DONT_FAKE_MONOTONIC=1", f"LD_PRELOAD={libs[0]}",
            f"FAKETIME={target - time.time():+.0f}")  # fmt: skip
