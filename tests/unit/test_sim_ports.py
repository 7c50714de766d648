"""The simulated readers' fixed ports lie outside the ports the kernel hands out, so
that no broker on a free port and no outgoing connection can hold one when pcscd starts
(a reader then never appeared: two pcscd tests failed in a row that way)."""

from __future__ import annotations

from pathlib import Path

import pytest
from edged.simulators.pcscd import reader_ports

pytestmark = pytest.mark.unit


def test_reader_ports_are_below_the_ephemeral_range():
    lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = reader_ports(["entry", "exit", "rack", "server-entry", "server-exit", "spare"])
    # vpcd opens port and port + 1 for each reader.
    assert all(not lo <= p <= hi and not lo <= p + 1 <= hi for p in ports.values()), (ports, lo)
