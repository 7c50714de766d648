"""`edged card enrol`: make a card the site's and print its access-list line (issue 18).

A DESFire EV2/EV3 card straight from the factory gets the site's application: its card
number (the real UID) in a free-read file, and its own AES key, diversified from the
site master key (never the key itself: the list holds nothing that makes a card). A
PIV card (a YubiKey, a PIV smart card) is asked to prove its Card Authentication key;
its public key is the line. The card lies on a PC/SC reader of this machine.
"""

from __future__ import annotations

import argparse
import base64
import time
from typing import Any

from edged.errors import ConfigError, DriverOperationError


def _connect(reader: str | None, wait: float) -> tuple[Any, Any, Any]:
    """(context, card handle, protocol) of the card on ``reader`` (a PC/SC name or its
    prefix; default: the first reader), once one lies there."""
    from smartcard import scard

    rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rv != scard.SCARD_S_SUCCESS:
        raise DriverOperationError(f"pcscd: {scard.SCardGetErrorMessage(rv).strip()}")
    end = time.monotonic() + wait
    while True:
        rv, names = scard.SCardListReaders(ctx, [])
        match = [n for n in (names or []) if reader is None or n.startswith(reader)]
        if match:
            rv, hcard, proto = scard.SCardConnect(
                ctx, match[0], scard.SCARD_SHARE_EXCLUSIVE,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )  # fmt: skip
            if rv == scard.SCARD_S_SUCCESS:
                return ctx, hcard, proto
        if time.monotonic() > end:
            scard.SCardReleaseContext(ctx)
            where = f"reader {reader!r}" if reader else "any reader"
            raise DriverOperationError(f"no card on {where} within {wait:g} s")
        time.sleep(0.2)


def _cmd_card_enrol(args: argparse.Namespace) -> int:
    from smartcard import scard

    from edged.cli.common import state_and_config
    from edged.device.wiring import card_proofs
    from edged.drivers.cards import desfire, piv
    from edged.drivers.cards.crypto import CardCryptoError, CardGone

    _state, cfg = state_and_config(args)
    ctx, hcard, proto = _connect(args.reader, args.wait)

    def transmit(apdu: bytes) -> bytes:
        rv, resp = scard.SCardTransmit(hcard, proto, list(apdu))
        if rv != scard.SCARD_S_SUCCESS:
            raise CardGone(f"transmit failed ({scard.SCardGetErrorMessage(rv).strip()})")
        return bytes(resp)

    try:
        if args.kind == "desfire":
            proofs = card_proofs(cfg)
            if proofs.desfire is None:
                raise ConfigError(f"{cfg.file}: [cards.desfire] is needed to enrol DESFire cards")
            uid = desfire.personalise(transmit, proofs.desfire)
            if desfire.authenticate(transmit, proofs.desfire) != uid:
                raise DriverOperationError("the card does not prove the key just written")
            line = uid.hex().upper()
        else:
            spki = piv.authenticate(transmit)
            line = "piv:" + base64.b64encode(spki).decode()
    except (CardCryptoError, CardGone) as e:
        raise DriverOperationError(f"enrolment failed: {e}") from None
    finally:
        scard.SCardDisconnect(hcard, scard.SCARD_RESET_CARD)
        scard.SCardReleaseContext(ctx)
    print(f"enrolled a {args.kind} card; its line in the access list:")
    print(f'cards = ["{line}"]')
    return 0


def register(sub: Any) -> None:
    card = sub.add_parser("card", help="enrol cards that prove themselves (DESFire, PIV)")
    csub = card.add_subparsers(dest="card_command", required=True, metavar="ACTION")
    ce = csub.add_parser("enrol", help="personalise a DESFire card or read a PIV card's key")
    ce.add_argument("--kind", choices=("desfire", "piv"), required=True)
    ce.add_argument("--config", required=True, help="the site's edged.toml ([cards])")
    ce.add_argument("--state-dir", help="where card_master.key lies (default: the config's)")
    ce.add_argument("--reader", help="PC/SC reader name or its prefix (default: the first)")
    ce.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a card")
    ce.set_defaults(handler=_cmd_card_enrol)
