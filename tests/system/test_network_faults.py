"""Half-open connections: the network between device and broker turns into a black hole
(packets dropped both ways, no FIN, no RST), then comes back (R10, R13).

The broker runs in a network namespace of its own, reached by two veth links: the
device's, which the test cuts by giving both ends a queue that holds nothing
(``tc qdisc ... pfifo limit 0``), and the collector's, which stays up. The device must
notice the dead connection by itself (MQTT keepalive), keep recording, reconnect when
the link is back, and the collector must end with every seq exactly once, in order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from edged.simulators.mosquitto import MosquittoHarness

from tests.conftest import enrol, require_pcscd
from tests.helpers.central import held
from tests.helpers.site import Running, Site

pytestmark = pytest.mark.system

ROOT = Path(__file__).parents[2]
SITE, DEVICE = "tokyo-hq", "door-3f-1"
PORT = 1883  # the namespace is ours alone


def ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        pytest.fail(f"{' '.join(cmd)}: {p.stderr.strip()}")


class BrokerNet:
    """A namespace for the broker, a device link and a collector link into it."""

    def __init__(self) -> None:
        n = os.getpid() % 250
        self.ns = f"edged-net-{n}"
        self.links = {  # name -> (host end, namespace end, host address, broker address)
            "device": (f"edh{n}", f"edn{n}", f"10.231.{n}.1", f"10.231.{n}.2"),
            "central": (f"ech{n}", f"ecn{n}", f"10.232.{n}.1", f"10.232.{n}.2"),
        }
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        ip("ip", "netns", "add", self.ns)
        ip("ip", "link", "set", "lo", "up", ns=self.ns)
        for host, inner, host_addr, ns_addr in self.links.values():
            subprocess.run(["ip", "link", "del", host], capture_output=True)
            ip("ip", "link", "add", host, "type", "veth", "peer", "name", inner)
            ip("ip", "link", "set", inner, "netns", self.ns)
            ip("ip", "addr", "add", f"{host_addr}/30", "dev", host)
            ip("ip", "link", "set", host, "up")
            ip("ip", "addr", "add", f"{ns_addr}/30", "dev", inner, ns=self.ns)
            ip("ip", "link", "set", inner, "up", ns=self.ns)

    def broker_addr(self, link: str) -> str:
        return self.links[link][3]

    def cut(self, link: str = "device") -> None:
        """Drop every packet both ways; the sockets at either end know nothing of it."""
        host, inner, _h, _n = self.links[link]
        ip("tc", "qdisc", "add", "dev", host, "root", "pfifo", "limit", "0")
        ip("tc", "qdisc", "add", "dev", inner, "root", "pfifo", "limit", "0", ns=self.ns)

    def heal(self, link: str = "device") -> None:
        host, inner, _h, _n = self.links[link]
        ip("tc", "qdisc", "del", "dev", host, "root")
        ip("tc", "qdisc", "del", "dev", inner, "root", ns=self.ns)

    def close(self) -> None:
        for host, *_rest in self.links.values():
            subprocess.run(["ip", "link", "del", host], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


@pytest.fixture
def net():
    if shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.fail("iproute2 (ip, tc) is missing: run scripts/bootstrap.sh")
    n = BrokerNet()
    yield n
    n.close()


@pytest.fixture
def broker(net, tmp_path):
    with MosquittoHarness(
        tmp_path / "mq", port=PORT, bind="0.0.0.0", netns=net.ns, host=net.broker_addr("central")
    ) as m:
        yield m


@pytest.mark.slow
def test_half_open_links_and_a_broker_restart_lose_nothing(net, broker, tmp_path):
    """R10, R13: three black-hole cuts of the device's link (found by keepalive, records
    kept meanwhile), one with the broker restarted behind it: every seq once, in order,
    and receipts bring acked_seq up to the head."""
    require_pcscd()
    state = tmp_path / "state"
    enrol(state)
    site = Site(
        tmp_path,
        PORT,
        state=state,
        host=net.broker_addr("device"),
        extra="keepalive_seconds = 2\n",
    )
    col = site.collector(host=net.broker_addr("central"))
    run = Running(site.cfg())
    d, presses, head = run.d, run.presses, run.head

    def collected() -> int:
        return len(held(col).seqs(SITE, DEVICE))

    try:
        sync = d.sync
        assert sync.wait_for(lambda s: s["connected"], timeout=15)
        for cycle in range(3):
            presses(20)
            h = head()
            assert col.wait_for(lambda h=h: collected() >= h, timeout=30)
            net.cut()
            presses(20)  # recorded while the link is a black hole
            # No FIN, no RST: only the keepalive can tell the connection is dead.
            assert sync.wait_for(lambda s: not s["connected"], timeout=30)
            if cycle == 1:
                broker.restart()  # and the broker loses its queues behind the cut
            net.heal()
            assert sync.wait_for(lambda s: s["connected"], timeout=30)
        presses(10)
        h = head()
        kept = held(col)
        assert col.wait_for(lambda: kept.seqs(SITE, DEVICE) == list(range(1, h + 1)), timeout=60)
        assert sync.wait_for(lambda s: s["acked_seq"] == h, timeout=30)
        assert held(col).alarms() == []
    finally:
        run.stop()
        col.close()
