"""Every benchmark runs in its quick mode, so none can rot unnoticed (the GPIO latency
benchmark once died on a pin the example config had taken, and nobody saw). Figures are
not judged here: this machine is shared and noisy; each benchmark prints its ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_pcscd

pytestmark = pytest.mark.system

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize(
    "name", ["journal", "decision", "latency", "sync", "central", "console", "proofs"]
)
def test_benchmark_runs_in_quick_mode(name):
    require_pcscd()
    p = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "ratio" in p.stdout, p.stdout[-2000:]
