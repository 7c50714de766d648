"""Input latency: card insertion -> core event, GPIO edge -> core event (drivers issue).

Each figure is printed next to a floor measured in the same run:
- card: a bare pyscard loop (SCardGetStatusChange, then GET DATA) on the same pcscd;
  edged's figure is split into pcscd's part (insert -> pcscd reports the card: its
  polling of the vpcd driver) and edged's own part (report -> event at the core);
- GPIO: a bare gpiozero DigitalInputDevice callback on the same MockFactory.

Needs pcscd and vsmartcard-vpcd; starts its own pcscd (stop any other first).
Usage: python -m benchmarks.latency [--taps N] [--edges N]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edged.drivers.cards.desfire import DesfireSettings
from edged.drivers.gpio import GpioDoors
from edged.drivers.pcsc import GET_UID, CardProofs, PcscCardReader
from edged.simulators.cards import DesfireCard, PivCard
from edged.simulators.pcscd import PcscdHarness, pcsc_reader_name
from edged.simulators.vcard import CardKind, VirtualCard
from gpiozero import DigitalInputDevice
from gpiozero.exc import GPIOPinInUse
from gpiozero.pins.mock import MockFactory
from smartcard import scard

from edged.core.events import (
    CardAuthFailed,
    CardPresented,
    CardRemoved,
    CardUnreadable,
    DoorContact,
)
from edged.device.config import GpioConfig, load_config
from edged.protocol.privacy import CardFingerprinter

UID = bytes.fromhex("012E4CD9A1B2C3D4")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def fmt(xs: list[float]) -> str:
    return f"p50 {statistics.median(xs):8.2f} ms  p99 {pct(xs, 99):8.2f} ms"


def _wait_state(ctx: int, name: str, known: int, want: int, timeout: float = 60.0) -> int:
    """Wait until the reader's state has ``want`` (0: any answer); the state it then has.
    Only a call that succeeded moves ``known``: a failed one (the reader not yet listed
    right after pcscd started, or a 5 s timeout on a loaded machine) returns no reader
    list, and passing
    that on made this loop spin for ever."""
    end = time.monotonic() + timeout
    rv = -1
    while time.monotonic() < end:
        rv, got = scard.SCardGetStatusChange(ctx, 5000, [(name, known)])
        if rv == 0 and got:
            known = got[0][1] & ~scard.SCARD_STATE_CHANGED
            if known & want or not want:
                return known
    raise TimeoutError(
        f"reader {name!r}: state {want:#x} not reached in {timeout:.0f} s (last answer"
        f" {rv & 0xFFFFFFFF:#x}, state {known:#x}, readers {scard.SCardListReaders(ctx, [])})"
    )


def _context(timeout: float = 30.0) -> int:
    """A PC/SC context, once pcscd takes one. Its answer was once ignored: a context asked
    for while pcscd was still starting was no context, and every later call failed with
    SCARD_E_INVALID_HANDLE until the 60 s wait gave up (a failed CI run)."""
    end = time.monotonic() + timeout
    while True:
        rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if rv == 0:
            return ctx
        if time.monotonic() > end:
            raise TimeoutError(f"pcscd gave no context in {timeout:.0f} s ({rv & 0xFFFFFFFF:#x})")
        time.sleep(0.05)  # pcscd is starting: no event to wait on but its socket


def raw_pyscard(port: int, name: str, taps: int) -> list[float]:
    """Insert -> card reported and its UID read, with nothing of edged in the way."""
    ctx = _context()
    out = []
    try:
        # Where the reader is now (any answer): pcscd may still be adding it.
        known = _wait_state(ctx, name, scard.SCARD_STATE_UNAWARE, 0)
        for _ in range(taps):
            card = VirtualCard(UID, port=port)
            t0 = time.monotonic_ns()
            card.insert()
            known = _wait_state(ctx, name, known, scard.SCARD_STATE_PRESENT)
            _, h, proto = scard.SCardConnect(
                ctx,
                name,
                scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
            scard.SCardTransmit(h, proto, GET_UID)
            scard.SCardDisconnect(h, scard.SCARD_LEAVE_CARD)
            out.append((time.monotonic_ns() - t0) / 1e6)
            card.remove()
            known = _wait_state(ctx, name, known, scard.SCARD_STATE_EMPTY)
    finally:
        scard.SCardReleaseContext(ctx)
    return out


def edged_cards(
    port: int, name: str, taps: int, proofs: CardProofs | None = None, make: Any = None
) -> tuple[list[float], list[float], list[float]]:
    """Insert -> CardPresented through edged's reader; ``make()``: a (VirtualCard
    arguments) for proving cards, whose proof must succeed."""
    q: queue.Queue = queue.Queue()
    fp = CardFingerprinter(b"b" * 32)
    total, polling, own = [], [], []
    with PcscCardReader({"entry": name}, fp.fingerprint, proofs=proofs) as r:
        r.start(q.put)
        r.ready.wait(10)
        for _ in range(taps):
            card = VirtualCard(UID, port=port) if make is None else make()
            t0 = time.monotonic_ns()
            card.insert()
            while not isinstance(ev := q.get(timeout=10), CardPresented):
                if isinstance(ev, CardAuthFailed | CardUnreadable):
                    raise SystemExit(f"benchmark card refused: {ev}")
            t1 = time.monotonic_ns()
            total.append((t1 - t0) / 1e6)
            polling.append((ev.mono_ns - t0) / 1e6)
            own.append((t1 - ev.mono_ns) / 1e6)
            card.remove()
            while not isinstance(q.get(timeout=10), CardRemoved):
                pass
    return total, polling, own


def proving_cards(port: int, name: str, taps: int) -> dict[str, tuple[list, list, int]]:
    """(total, edged's own part, APDUs a tap) for a DESFire and a PIV card."""
    master, aid = bytes(range(16)), bytes.fromhex("E1D6E0")
    settings = DesfireSettings(aid, 1, 1, master, b"edged")
    uid = bytes.fromhex("04A1D2E3F40506")
    piv_applet = PivCard()
    made: list[VirtualCard] = []

    def desfire() -> VirtualCard:
        made.append(VirtualCard(uid, CardKind.DESFIRE, port=port,
                                applet=DesfireCard.enrolled(uid, master, aid)))  # fmt: skip
        return made[-1]

    def piv() -> VirtualCard:
        made.append(VirtualCard(UID, CardKind.PIV, port=port, applet=piv_applet))
        return made[-1]

    out = {}
    for kind, make, proofs in (
        ("desfire", desfire, CardProofs(settings)),
        ("piv", piv, CardProofs(None, True)),
    ):
        made.clear()
        tot, _polling, mine = edged_cards(port, name, taps, proofs, make)
        out[kind] = (tot, mine, made[-1].apdus_seen)
    return out


def compute_only(n: int) -> dict[str, float]:
    """Median ms of each proof with the card answering in this process: the door's and
    the simulated card's cryptography, no transport."""
    from edged.drivers.cards import desfire as door_desfire
    from edged.drivers.cards import piv as door_piv

    master, aid = bytes(range(16)), bytes.fromhex("E1D6E0")
    settings = DesfireSettings(aid, 1, 1, master, b"edged")
    card = DesfireCard.enrolled(bytes.fromhex("04A1D2E3F40506"), master, aid)
    piv_card = PivCard()
    out = {}

    def answer_of(applet: Any) -> Any:
        return lambda apdu: applet.answer(apdu) or b"\x6d\x00"

    for kind, run in (
        ("desfire", lambda: door_desfire.authenticate(answer_of(card), settings)),
        ("piv", lambda: door_piv.authenticate(answer_of(piv_card))),
    ):
        times = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            run()
            times.append((time.perf_counter_ns() - t0) / 1e6)
        out[kind] = statistics.median(times)
    return out


def free_input(f: MockFactory) -> tuple[int, DigitalInputDevice]:
    for pin in range(2, 28):
        try:
            return pin, DigitalInputDevice(pin, pull_up=True, pin_factory=f)
        except GPIOPinInUse:
            continue
    raise RuntimeError("no free GPIO pin for the floor measurement")


def gpio(edges: int) -> tuple[list[float], list[float]]:
    f = MockFactory()
    got: queue.Queue = queue.Queue()
    cfg = load_config(Path(__file__).parent.parent / "config" / "edged.toml")
    doors = GpioDoors(cfg.doors, GpioConfig(debounce_ms=0), pin_factory=f)
    # The floor's pin: the first one the example config leaves free (a fixed pin 4 once
    # collided with the server room's exit button, and the benchmark died unnoticed).
    raw_pin, raw_dev = free_input(f)
    raw_dev.when_activated = lambda _d: got.put(time.monotonic_ns())
    raw_dev.when_deactivated = lambda _d: got.put(time.monotonic_ns())
    q: queue.Queue = queue.Queue()
    doors.start(q.put)
    contact = cfg.doors["main"].contact_pin
    raw: list[float] = []
    ours: list[float] = []
    for i in range(edges):
        for pin, sink, out in ((f.pin(raw_pin), got, raw), (f.pin(contact), q, ours)):
            t0 = time.monotonic_ns()
            pin.drive_low() if i % 2 == 0 else pin.drive_high()
            item = sink.get(timeout=5)
            t1 = item if isinstance(item, int) else time.monotonic_ns()
            assert isinstance(item, int | DoorContact)
            out.append((t1 - t0) / 1e6)
    doors.close()
    raw_dev.close()
    return raw, ours


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--taps", type=int, default=20)
    ap.add_argument("--edges", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="a few samples: proves it runs (CI)")
    a = ap.parse_args()
    if a.quick:
        a.taps, a.edges = 3, 50
    with PcscdHarness(Path(tempfile.mkdtemp())) as h:
        name, port = pcsc_reader_name("entry"), h.port("entry")
        raw = raw_pyscard(port, name, a.taps)
        total, polling, own = edged_cards(port, name, a.taps)
        proved = proving_cards(port, name, a.taps)
    graw, gours = gpio(a.edges)
    print(f"card insert -> event ({a.taps} taps, real pcscd + vpcd)")
    print(f"  edged total            {fmt(total)}")
    print(f"    pcscd's part         {fmt(polling)}   (insert -> pcscd reports the card)")
    print(f"    edged's own part     {fmt(own)}   (report -> event at the core)")
    print(f"  floor: bare pyscard    {fmt(raw)}")
    print(
        f"  ratio edged/floor p50 = {statistics.median(total) / statistics.median(raw):.2f}"
        f"  p99 = {pct(total, 99) / pct(raw, 99):.2f}"
    )
    share = statistics.median(polling) / statistics.median(total)
    print(f"  pcscd polling is {share:.0%} of the median latency")
    print("cards that prove themselves, through the same pcscd (issue 18)")
    for kind, (tot, mine, apdus) in proved.items():
        extra = statistics.median(mine) - statistics.median(own)
        print(
            f"  {kind:8} total {fmt(tot)}; ratio to identifier-only p50"
            f" {statistics.median(tot) / statistics.median(total):.2f}"
        )
        print(
            f"           edged's own part p50 {statistics.median(mine):6.2f} ms"
            f" (+{extra:.2f} ms over identifier-only): {apdus} APDUs a tap, i.e."
            f" {apdus - 1} more round trips than GET DATA"
        )
    direct = compute_only(50)
    for kind, ms in direct.items():
        print(f"  {kind:8} the protocol's computing alone (card answered in-process): {ms:.2f} ms")
    print(
        "  the rest of the extra time is the round trips: vpcd costs about as much per APDU"
        " as the identifier read takes; a real ISO 14443-4 reader 3-10 ms each"
    )
    print(f"GPIO edge -> event ({a.edges} edges, MockFactory)")
    print(
        f"  edged                  p50 {statistics.median(gours) * 1000:7.1f} us  p99 "
        f"{pct(gours, 99) * 1000:7.1f} us"
    )
    print(
        f"  floor: bare gpiozero   p50 {statistics.median(graw) * 1000:7.1f} us  p99 "
        f"{pct(graw, 99) * 1000:7.1f} us"
    )
    print(f"  ratio p50 = {statistics.median(gours) / statistics.median(graw):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
