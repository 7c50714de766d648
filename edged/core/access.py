"""The access decision (R1, R2, R3): may this card act in this area now?

The one gate every card read passes, at any reader and in any dialogue (entry, escort,
carry-out approver, custodian at a cabinet): the card's kind and proof, the access list,
the person's validity, areas and hours, and a PIN lock-out. Each caller adds only its
own question (is the approver inside, is the custodian the cabinet's).
"""

from __future__ import annotations

from edged.core.actions import Denial
from edged.core.context import Context
from edged.core.events import CardPresented
from edged.core.lockout import PinLockout
from edged.core.policy import Person
from edged.core.state import Now


def genuine(ctx: Context, area: str, ev: CardPresented) -> bool:
    """The card showed itself the way ``area`` asks (an identifier alone is anyone's copy
    where the area takes only proven cards). Asked by the area's name only."""
    a = ctx.cfg.areas.get(area)
    return not (a is not None and a.cards and (ev.proof or "id") not in a.cards)


def check_person(ctx: Context, p: Person, area: str, now: Now) -> Denial | None:
    """Why ``p`` may not enter ``area`` now, or None."""
    policy = ctx.cfg.clock.when_unsynced
    if not now.synced and policy == "deny_all":
        return "clock_untrusted"
    local = ctx.local(now)
    if local.date() < p.valid_from:
        return "not_yet_valid"
    if local.date() > p.valid_until:
        return "expired"
    if area not in p.areas:
        return "area_not_allowed"
    if p.windows:
        if not now.synced and policy == "deny_windowed":
            return "clock_untrusted"
        minute = local.hour * 60 + local.minute
        closed = ctx.calendar.closed(local.date()) is not None
        if not p.in_window(local.weekday(), minute, closed=closed):
            # A working day's window would have let them in: the day is closed.
            if closed and p.in_window(local.weekday(), minute):
                return "holiday"
            return "outside_window"
    return None


def card_gate(
    ctx: Context, lockout: PinLockout, area: str, ev: CardPresented, now: Now
) -> tuple[Person | None, Denial | None]:
    """Whose card this is, and why it may not act in ``area`` now (None: it may)."""
    p = ctx.by_card(ev.card)
    if not genuine(ctx, area, ev):
        return p, "card_kind_not_allowed"
    if ctx.acl is None:
        return None, "no_access_list"
    if p is None:
        return None, "unknown_card"
    reason = check_person(ctx, p, area, now)
    if reason is None and lockout.locked(ev.card, now.mono):
        reason = "pin_locked_out"
    return p, reason
