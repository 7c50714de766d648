"""The console on a big central store (issue 15): with 1,000 devices' worth of records
(5 million by default) in PostgreSQL, the company overview, one site's overview, and one
site's ledger for a month: p95 of whole HTTP answers from ``edged console`` (session
check, queries, building, rendering), next to p95 of the raw SQL each page rests on, run
through psycopg against the same server in the same round. Target: each page <= 2x its
floor.

The store is loaded directly (COPY, triggers off for the load only): records with real
hashes and chain links from a door-like day (entries, doors, exits, cabinets, a few
denials and alarms), their signatures zero bytes, as the ledger without ``--trust``
checks hashes and links but trusts the collector's check of each signature. The present
tables are folded by the store's own code (edged.central.present). Rounds alternate
floors and pages; p95 over all samples (this machine is shared and noisy).

Usage: python -m benchmarks.console [--devices N] [--per-device K] [--sites S]
       [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import multiprocessing
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zoneinfo
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edged.simulators.mosquitto import free_port
from edged.simulators.postgres import PostgresHarness

from edged.central.ledger import _utc_bounds
from edged.central.present import Changes
from edged.central.store import open_store
from edged.protocol.keys import key_id_of
from edged.protocol.records import GENESIS, format_ts, seal

TZ = "Asia/Tokyo"
DAY_MS = 86_400_000
PASSWORD = "benchmark password 1"
NAMES = ["山田 太郎", "佐藤 花子", "鈴木 一郎", "高橋 美咲", "田中 健", "伊藤 さくら", "渡辺 翔"]
EDGED = str(Path(sys.executable).with_name("edged"))


def _device_rows(
    site: str, device: str, n: int, start_ms: int, span_ms: int, seed: int
) -> tuple[list[tuple], tuple[int, str], Changes]:
    """One device's records as store rows, its head, and their fold."""
    rng = random.Random(seed)  # a load pattern, not a secret
    kid = key_id_of(Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key())
    area = rng.choice(["handling", "server-room"])
    step = span_ms // max(1, n)
    rows, changes, prev, seq = [], Changes(), GENESIS, 0
    inside: list[str] = []

    def put(rtype: str, fields: dict) -> None:
        nonlocal prev, seq
        seq += 1
        wall = start_ms + seq * step + rng.randrange(step)
        obj = dict(fields)
        obj.update(site=site, device=device, seq=seq, ts=format_ts(wall),
                   mono_us=seq * 1000, boot_id="bench", clock_synced=True, type=rtype,
                   prev=prev, key_id=kid)  # fmt: skip
        rec = seal(obj, lambda _b: bytes(64))
        body = rec.wire().decode()
        rows.append((site, device, seq, rtype, obj["ts"], rec.hash, body, 1))
        changes.add(site, device, rtype, obj["ts"], body)
        prev = rec.hash

    while seq < n:
        roll = rng.random()
        person = f"S{rng.randrange(1000, 1060)}"
        if roll < 0.02:
            put("door.denied", {"door": "main", "area": area, "reason": "outside_window",
                                "person": person, "name": rng.choice(NAMES)})  # fmt: skip
        elif roll < 0.025:
            put("alarm.door_held_open", {"door": "main", "seconds": 30})
        elif roll < 0.1:
            put("cabinet.unlocked", {"cabinet": "cab-a", "area": area})
            put("cabinet.locked", {"cabinet": "cab-a", "area": area})
        elif inside and (roll < 0.55 or len(inside) > 4):
            who = inside.pop(rng.randrange(len(inside)))
            put("door.exit", {"door": "main", "area": area, "person": who, "method": "card"})
            put("door.opened", {"door": "main"})
            put("door.closed", {"door": "main"})
        elif person not in inside:
            inside.append(person)
            put("door.granted", {"door": "main", "area": area, "person": person,
                                 "name": NAMES[int(person[1:]) % len(NAMES)],
                                 "direction": "entry", "purpose": "payroll"})  # fmt: skip
            put("door.opened", {"door": "main"})
            put("door.closed", {"door": "main"})
    return rows[:n], (n, rows[n - 1][5]), changes


def _load_site(job: tuple[str, str, int, int, int, int, int]) -> int:
    url, site, devices, per_device, start_ms, span_ms, seed = job
    heads, total = [], 0
    store = open_store(url)
    with psycopg.connect(url) as c:
        c.execute("SET session_replication_role = replica")  # the load only: no triggers
        for i in range(devices):
            device = f"door-{i:03d}"
            rows, head, changes = _device_rows(site, device, per_device, start_ms, span_ms,
                                               seed * 10_000 + i)  # fmt: skip
            with c.cursor().copy("COPY records FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
            heads.append((site, device, *head))
            for sql, args in changes.statements():
                store._many(sql, args)
            total += len(rows)
        c.commit()
    store.save_heads(heads)
    now = int(time.time() * 1000)
    for k, (s, d, _seq, _h) in enumerate(heads):
        late = k == 0  # one device per site not heard for ten minutes: in trouble
        store.reports.note_status((s, d), now - (600_000 if late else 1000),
                          {"ts": format_ts(now), "head_seq": per_device, "acked_seq": per_device,
                           "backlog": 0, "clock_synced": True, "journal_ok": True})  # fmt: skip
    store.commit()
    store.close()
    return total


def load(url: str, sites: int, devices: int, per_device: int, days: int) -> int:
    now = int(time.time() * 1000)
    start = now - days * DAY_MS
    store = open_store(url)
    for m in range(0, days + 95, 80):  # monthly partitions over the whole span
        store.prepare_months(start + m * DAY_MS)
    for k in range(30):  # alarms: most acknowledged, a few to act on
        store.alarms.add(format_ts(now - k * 60_000), ("site-00", "door-001"), "door_held_open",
                        "door=main seconds=30")  # fmt: skip
    for a in store.alarms.after()[5:]:
        store.alarms.ack(a["id"], "bench", format_ts(now), "seen")
    store.commit()
    store.close()
    per_site = devices // sites
    jobs = [(url, f"site-{s:02d}", per_site, per_device, start, days * DAY_MS, s)
            for s in range(sites)]  # fmt: skip
    with multiprocessing.Pool(2) as pool:
        total = sum(pool.imap_unordered(_load_site, jobs))
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("ANALYZE")
    return total


class Console:
    """``edged console`` on the store, logged in over one keep-alive connection."""

    def __init__(self, url: str) -> None:
        subprocess.run(
            [EDGED, "console", "--store", url, "user", "add", "bench", "--role", "auditor",
             "--password-stdin"],
            input=PASSWORD + "\n", text=True, check=True, capture_output=True,
        )  # fmt: skip
        self.port = free_port()
        self.proc = subprocess.Popen(
            [EDGED, "console", "--store", url, "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.proc.stdout.readline()
        for _ in range(200):
            try:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                self.conn.connect()
                break
            except OSError:
                time.sleep(0.05)
        _status, headers, body = self.get("/login")
        login_cookie = _cookies(headers)
        csrf = re.search(r'name="csrf" value="([^"]+)"', body).group(1)  # type: ignore[union-attr]
        form = urllib.parse.urlencode({"csrf": csrf, "user": "bench", "password": PASSWORD})
        form_type = "application/x-www-form-urlencoded"
        self.conn.request("POST", "/login", form, {"Cookie": login_cookie,
                                                   "Content-Type": form_type})  # fmt: skip
        r = self.conn.getresponse()
        r.read()
        self.cookie = _cookies(r.headers)
        assert r.status == 303 and "edged_session" in self.cookie, r.status

    def get(self, path: str) -> tuple[int, http.client.HTTPMessage, str]:
        headers = {"Cookie": self.cookie} if hasattr(self, "cookie") else {}
        self.conn.request("GET", path, headers=headers)
        r = self.conn.getresponse()
        return r.status, r.headers, r.read().decode()

    def close(self) -> None:
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(10)


def _cookies(headers: http.client.HTTPMessage) -> str:
    return "; ".join(h.split(";", 1)[0] for h in headers.get_all("Set-Cookie") or [])


# The SQL each page rests on, as the console's store runs it (edged.central.store): the
# session check, then the page's own queries.
SESSION = [
    ("SELECT s.name, u.role, s.csrf, s.seen_ms FROM console_sessions s JOIN console_users u"
     " ON u.name = s.name WHERE s.token_hash = %s", ("x",)),
]  # fmt: skip


def floors(since_ms: int) -> dict[str, list[tuple[str, tuple]]]:
    alarms = [
        ("SELECT id, ts, site, device, type, detail, source, seq, cleared_ts, acked_by,"
         " acked_ts, ack_comment FROM alarms WHERE cleared_ts IS NULL AND acked_by IS NULL"
         " ORDER BY id DESC LIMIT 50", ()),
        ("SELECT max(id) FROM alarms", ()),
    ]  # fmt: skip
    summary = [
        ("SELECT site, count(*) FROM present_people GROUP BY site", ()),
        ("SELECT site, kind, count(*) FROM present_points WHERE state = 'open'"
         " GROUP BY site, kind", ()),
        ("SELECT site, count(*), sum(CASE WHEN heard_ms < %s OR journal_ok = 0 THEN 1 ELSE 0"
         " END) FROM device_status GROUP BY site", (since_ms,)),
        ("SELECT DISTINCT site FROM devices", ()),
    ]  # fmt: skip
    return {"overview": SESSION + summary + alarms}


def site_floor(site: str) -> list[tuple[str, tuple]]:
    return floors(0)["overview"] + [
        ("SELECT site, device, area, person, name, since_ts FROM present_people WHERE site = %s"
         " ORDER BY site, area, person", (site,)),
        ("SELECT site, device, kind, name, state, area, ts FROM present_points WHERE site = %s"
         " ORDER BY site, area, kind, name", (site,)),
        ("SELECT site, device, heard_ms, ts, head_seq, acked_seq, backlog, clock_synced,"
         " journal_ok FROM device_status WHERE site = %s ORDER BY device", (site,)),
    ]  # fmt: skip


def ledger_floor(site: str, month: dt.date) -> list[tuple[str, tuple]]:
    lo, hi = _utc_bounds(month, _month_end(month), TZ)
    return [
        *SESSION,
        ("SELECT device, seq, hash, body FROM records WHERE site = %s AND ts >= %s AND ts < %s"
         " ORDER BY device, seq", (site, lo, hi)),
        ("SELECT site, device, last_seq FROM devices", ()),
    ]  # fmt: skip


def _month_end(month: dt.date) -> dt.date:
    return (month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)


def _ledger_path(site: str, month: dt.date) -> str:
    return f"/ledger?site={site}&from={month}&to={_month_end(month)}"


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[-1] if len(xs) >= 2 else xs[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--per-device", type=int, default=5000)
    ap.add_argument("--sites", type=int, default=50)
    ap.add_argument("--days", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=20, help="per page and round")
    ap.add_argument("--quick", action="store_true", help="a small store: proves it runs (CI)")
    a = ap.parse_args()
    if a.quick:
        a.devices, a.per_device, a.sites, a.days, a.rounds, a.samples = 20, 400, 2, 40, 1, 5
    tmp = Path(tempfile.mkdtemp(prefix="edged-bench-console-"))
    pg = PostgresHarness()
    pg.start()
    console = None
    try:
        t0 = time.perf_counter()
        n = load(pg.url, a.sites, a.devices, a.per_device, a.days)
        print(f"loaded {n:,} records of {a.devices} devices in {a.sites} sites"
              f" in {time.perf_counter() - t0:.0f} s")  # fmt: skip
        console = Console(pg.url)
        today = dt.datetime.now(zoneinfo.ZoneInfo(TZ)).date()
        months: list[dt.date] = []  # the full months of the span, newest first
        m = today.replace(day=1)
        while len(months) < max(1, a.days // 31 - 1):
            m = (m - dt.timedelta(days=1)).replace(day=1)
            months.append(m)
        sites = [f"site-{k:02d}" for k in range(a.sites)]
        site, month = sites[min(1, len(sites) - 1)], months[0]
        # Each "first view" is a (site, month) the console has not built before.
        firsts = [(s_, m_) for m_ in months for s_ in sites]
        with psycopg.connect(pg.url) as c:
            n_month = len(c.execute(*ledger_floor(site, month)[1]).fetchall())
        print(f"{site}'s ledger for {month:%Y-%m}: {n_month:,} records read (the month and the"
              " week before, for visits that began then)")  # fmt: skip
        since = int(time.time() * 1000) - 180_000
        tests = {
            "overview": ("/", lambda: floors(since)["overview"]),
            "site": (f"/?site={site}", lambda: site_floor(site)),
            "ledger-again": (_ledger_path(site, month), lambda: ledger_floor(site, month)),
        }
        for path, _f in tests.values():  # warm: caches, the first connection's setup
            console.get(path)
        got: dict[str, list[float]] = {k: [] for k in [*tests, "ledger-first"]}
        floor: dict[str, list[float]] = {k: [] for k in got}

        def run_sql(c: psycopg.Connection, stmts: list[tuple[str, tuple]]) -> float:
            t = time.perf_counter()
            for stmt, args in stmts:
                c.execute(stmt, args).fetchall()
            return time.perf_counter() - t

        def run_page(path: str) -> float:
            t = time.perf_counter()
            status, _h, body = console.get(path)
            took = time.perf_counter() - t
            assert status == 200, (path, status, body[:300])
            return took

        heavy = max(3, a.samples // 4)
        for _ in range(a.rounds):
            with psycopg.connect(pg.url, autocommit=True) as c:
                for name, (_p, stmts) in tests.items():
                    for _ in range(heavy if name.startswith("ledger") else a.samples):
                        floor[name].append(run_sql(c, stmts()))
                for s_, m_ in firsts[:heavy]:
                    floor["ledger-first"].append(run_sql(c, ledger_floor(s_, m_)))
            for s_, m_ in firsts[:heavy]:
                got["ledger-first"].append(run_page(_ledger_path(s_, m_)))
            console.get(tests["ledger-again"][0])  # its first view was one of those above
            for name, (path, _s) in tests.items():
                for _ in range(heavy if name.startswith("ledger") else a.samples):
                    got[name].append(run_page(path))
            firsts = firsts[heavy:] or firsts
        for name in got:
            f, g = p95(floor[name]), p95(got[name])
            fm, gm = statistics.median(floor[name]), statistics.median(got[name])
            print(f"{name:13s} p95 {g * 1000:7.1f} ms, raw SQL {f * 1000:7.1f} ms: ratio"
                  f" {g / f:5.2f}x (target <= 2x); median ratio {gm / fm:5.2f}x"
                  f" ({gm * 1000:.1f} / {fm * 1000:.1f} ms)")  # fmt: skip
    finally:
        if console is not None:
            console.close()
        pg.remove()  # its data directory too (pg.stop() left gigabytes per run)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
