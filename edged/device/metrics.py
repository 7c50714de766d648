"""Optional Prometheus metrics, text format, on a loopback address only (off by default).

Values come from a snapshot callable that the daemon runs on its core thread
(``Daemon.call``), so a scrape never races the state, and metrics know nothing else of it.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edged.errors import ConfigError


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:9108`` -> (host, port); anything but a loopback address is refused."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
        port_n = int(port)
    except ValueError:
        raise ConfigError(f"metrics.listen: expected LOOPBACK-IP:PORT, got {text!r}") from None
    if not ip.is_loopback or not 0 < port_n < 65536:
        raise ConfigError(
            f"metrics.listen: {text!r} is not a loopback address and port;"
            " metrics stay on the device"
        )
    return host, port_n


def render(snap: dict[str, Any]) -> str:
    """Prometheus exposition text for a daemon snapshot."""
    core = snap.get("core", {})
    journal = snap.get("journal", {})
    lines = [
        "# HELP edged_journal_head_seq Last committed record.",
        "# TYPE edged_journal_head_seq gauge",
        f"edged_journal_head_seq {journal.get('head_seq', 0)}",
        "# HELP edged_journal_ok 0 while the journal cannot record (entries are refused).",
        "# TYPE edged_journal_ok gauge",
        f"edged_journal_ok {int(bool(journal.get('ok', True)))}",
        "# HELP edged_journal_unrecorded Records refused since the journal failed.",
        "# TYPE edged_journal_unrecorded gauge",
        f"edged_journal_unrecorded {journal.get('fault', {}).get('unrecorded', 0)}",
        "# HELP edged_alarm_active 1 while any alarm condition holds.",
        "# TYPE edged_alarm_active gauge",
        f"edged_alarm_active {int(bool(core.get('alarm')))}",
        "# HELP edged_occupancy People inside each area.",
        "# TYPE edged_occupancy gauge",
    ]
    lines += [
        f'edged_occupancy{{area="{a}"}} {len(ids)}'
        for a, ids in sorted(core.get("occupancy", {}).items())
    ]
    lines += [
        "# HELP edged_door_unlocked 1 while the door's lock is released.",
        "# TYPE edged_door_unlocked gauge",
    ]
    lines += [
        f'edged_door_unlocked{{door="{d}"}} {int(bool(s.get("unlocked")))}'
        for d, s in sorted(core.get("doors", {}).items())
    ]
    lines += [
        "# HELP edged_readers_lost Card readers currently lost.",
        "# TYPE edged_readers_lost gauge",
        f"edged_readers_lost {len(core.get('readers_lost', {}))}",
    ]
    sync = snap.get("sync")
    if sync is not None:
        head = snap.get("journal", {}).get("head_seq", 0)
        lines += [
            "# HELP edged_sync_acked_seq Highest seq receipted by the collector.",
            "# TYPE edged_sync_acked_seq gauge",
            f"edged_sync_acked_seq {sync['acked_seq']}",
            "# HELP edged_sync_backlog Records not yet receipted centrally.",
            "# TYPE edged_sync_backlog gauge",
            f"edged_sync_backlog {head - sync['acked_seq']}",
            "# HELP edged_sync_connected 1 while connected to the broker.",
            "# TYPE edged_sync_connected gauge",
            f"edged_sync_connected {int(bool(sync['connected']))}",
        ]
    return "\n".join(lines) + "\n"


class MetricsServer:
    """HTTP ``GET /metrics`` on loopback; ``close()`` is idempotent."""

    def __init__(self, listen: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        host, port = parse_listen(listen)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = render(snapshot()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_a: Any) -> None:
                pass  # scrapes are not worth a log line each

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
