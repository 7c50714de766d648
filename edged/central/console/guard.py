"""Who is asking and how often: the client's address (through trusted reverse proxies
only) and the login budgets per address and per account (R12, R21).

Behind the TLS proxy that docs/central.md recommends, every request comes from the
proxy's address: keyed on that, one budget served everyone, and anyone could spend it to
keep every user out. The proxy's ``X-Forwarded-For`` is believed only when the request
comes from a proxy named in ``--trusted-proxy``; anyone else could write that header."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.5``, ``10.0.0.0/24``, ``::1``; ValueError naming the bad one."""
    out = []
    for spec in specs:
        try:
            out.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(f"--trusted-proxy: not an address or network: {spec!r}") from None
    return tuple(out)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str:
    """The address a request comes from. From a trusted proxy: the nearest address in
    its ``X-Forwarded-For`` chain that is not itself a trusted proxy (the ones before it
    are whatever the client chose to write). Otherwise the peer, headers ignored."""
    if peer is None:
        return "?"
    ip = _ip(peer)
    if ip is None or not any(ip in n for n in trusted):
        return peer
    hops = [h for value in forwarded_for for h in value.split(",")]
    for hop in reversed(hops):
        addr = _ip(hop)
        if addr is None:
            return peer  # a chain we cannot read: the proxy itself is who we know
        if not any(addr in n for n in trusted):
            return str(addr)
    return peer


class Budget:
    """At most ``limit`` tries a ``window`` seconds for each key, in memory, bounded:
    keys whose tries are all older than the window are forgotten, and beyond
    ``max_keys`` live keys new ones are refused (nothing from the network grows it
    without end)."""

    def __init__(self, limit: int, window: float = 60.0, max_keys: int = 10_000) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._tries: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def spend(self, key: str, now: float | None = None) -> bool:
        """Count a try for ``key``; False when its budget (or the table) is full."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for t in self._tries.get(key, ()) if now - t < self.window]
            if len(recent) >= self.limit:
                self._tries[key] = recent
                return False
            if key not in self._tries and len(self._tries) >= self.max_keys:
                self._forget(now)
                if len(self._tries) >= self.max_keys:
                    return False
            self._tries[key] = [*recent, now]
            return True

    def _forget(self, now: float) -> None:
        for k in [k for k, ts in self._tries.items() if not ts or now - ts[-1] >= self.window]:
            del self._tries[k]

    def __len__(self) -> int:
        return len(self._tries)
