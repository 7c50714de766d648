"""Going in (R1, R2, R3, R4): a card at an entry reader, the questions it must answer,
the escort a visitor waits for, and the grant that counts them inside. A sub-machine of
the core: it writes who is inside and with which escort, opens dialogues for
:mod:`edged.core.prompts`, and returns actions.
"""

from __future__ import annotations

from typing import Any

from edged.core.access import card_gate
from edged.core.actions import Action, Indicate, Record, Step
from edged.core.context import Context, unlock
from edged.core.events import CardPresented
from edged.core.policy import Person
from edged.core.state import NS, CoreState, Now, Prompt

# What a dialogue collected that goes into the grant's record.
GRANT_FIELDS = ("purpose", "carry_in", "pin_expires_in_days", "proof", "passback")


class Entry:
    def __init__(self, ctx: Context, state: CoreState) -> None:
        self.ctx, self.s = ctx, state

    def card(self, door: str, ev: CardPresented, now: Now) -> list[Action]:
        ctx, area, card = self.ctx, self.ctx.cfg.doors[door].area, ev.card
        # How the card showed it is this card goes into the grant (the ledger's auditor
        # can tell a proven card from a number that anyone could have copied).
        proven: dict[str, Any] = {"proof": ev.proof} if ev.proof else {}
        p, reason = card_gate(ctx, self.s.lockout, area, ev, now)
        if reason == "card_kind_not_allowed":
            accepted = sorted(ctx.cfg.areas[area].cards)
            return ctx.deny(door, card, reason, p, card_kind=ev.kind, accepted=accepted)
        if reason in ("no_access_list", "unknown_card"):
            return ctx.deny(door, card, reason, card_kind=ev.kind)
        if reason == "holiday":
            day = ctx.calendar.closed(ctx.local(now).date())
            return ctx.deny(door, card, reason, p, closed_day=day)
        if reason:
            return ctx.deny(door, card, reason, p)
        assert p is not None
        passback = self._passback(area, p.id)
        if passback in ("uncertain", "soft"):
            proven["passback"] = passback

        if p.role == "visitor":
            if passback == "refuse":
                return ctx.deny(door, card, "already_inside", p)
            window = int(ctx.cfg.policy.escort_seconds * NS)
            esc = self.s.escorts.followed(door, now.mono, window)
            if esc is not None:
                steps = self._steps(area, pin=False)
                return self._begin(door, area, p, card, steps, now, {"escort": esc, **proven})
            self.s.escorts.wait(door, p, card, now.mono + window)
            return [Indicate("green", True, blink=True)]  # waiting for an escort

        pending = self.s.escorts.take_waiting(door, now.mono) if p.escort else None
        if pending is not None:
            # This tap is the escort of a waiting visitor: the escort authenticates
            # (PIN in management areas), then both go in.
            steps = self._steps(area, pin=self._needs_pin(area))
            if "pin" in steps and p.pin is None:
                return ctx.deny(door, card, "pin_not_enrolled", p)
            return self._begin(door, area, p, card, steps, now, {"visitor": pending, **proven})

        if passback == "refuse":
            return ctx.deny(door, card, "already_inside", p)  # anti-passback
        steps = self._steps(area, pin=self._needs_pin(area))
        if "pin" in steps and p.pin is None:
            return ctx.deny(door, card, "pin_not_enrolled", p)
        if p.role == "admin":
            steps = ["admin", *steps]
        return self._begin(door, area, p, card, steps, now, proven)

    def _passback(self, area: str, person: str) -> str | None:
        """A tap in by someone counted inside ``area``: "refuse" (hard anti-passback), or
        why they go in all the same: "uncertain" (an exit without a tap may have been
        theirs: nobody is refused in the morning for yesterday's exit button), "soft"
        (the area records it and lets them in). None: not counted inside."""
        if person not in self.s.occupancy.get(area, {}):
            return None
        if self.s.untapped.is_uncertain(area, person):
            return "uncertain"
        return "soft" if self.ctx.cfg.areas[area].anti_passback == "soft" else "refuse"

    def _needs_pin(self, area: str) -> bool:
        a = self.ctx.cfg.areas.get(area)
        return bool(a and a.pin_required)

    def _steps(self, area: str, *, pin: bool) -> list[Step]:
        a = self.ctx.cfg.areas.get(area)
        steps: list[Step] = ["pin"] if pin else []
        if a and a.purposes:
            steps.append("purpose")
        if a and a.carry_in:
            steps.append("carry_in")
        return steps

    def _begin(
        self, door: str, area: str, p: Person, card: str, steps: list[Step], now: Now,
        collected: dict[str, Any],
    ) -> list[Action]:  # fmt: skip
        if not steps:
            return self.grant(Prompt(door, area, p, card, [], 0, collected), now)
        if door not in self.ctx.cfg.keypads:
            return self.ctx.deny(door, card, "no_keypad", p, needs=steps)
        deadline = self.ctx.prompt_deadline(now, door, steps)
        self.s.prompts[door] = Prompt(door, area, p, card, steps, deadline, collected)
        return [Indicate("green", True, blink=True)]

    def _count_in(self, area: str, p: Person, now: Now) -> None:
        self.s.occupancy.setdefault(area, {})[p.id] = p.name
        self.s.stays.entered(area, p.id, now.wall_ms)

    def grant(self, pr: Prompt, now: Now) -> list[Action]:
        """Every question answered: in they go (with the visitor this escort came for)."""
        door, area, p, card = pr.door, pr.area, pr.person, pr.card
        extra = {k: pr.collected[k] for k in GRANT_FIELDS if k in pr.collected}
        inside = self.s.occupancy.setdefault(area, {})
        out: list[Action] = []
        esc: Person | None = pr.collected.get("escort")
        visitor = pr.collected.get("visitor")
        base = self.ctx.base
        if visitor is not None:
            # p is the escort; the visitor it came for goes in with it.
            v, vcard = visitor.person, visitor.card
            if p.id not in inside:
                out.append(Record("door.granted", {**base(door, "entry", card, p), "reason": "ok",
                                                   "escorting": v.id, **extra}))  # fmt: skip
                self._count_in(area, p, now)
            out.append(
                Record(
                    "door.granted",
                    {
                        **base(door, "entry", vcard, v),
                        "reason": "escorted",
                        "escort": p.id,
                        "escort_name": p.name,
                        # The proof was the escort's card's, not the visitor's.
                        **{k: x for k, x in extra.items() if k != "proof"},
                        **self._answerable(v, area),
                    },
                )
            )
            self._count_in(area, v, now)
            self.s.escorts.entered(area, v.id, p.id)
        else:
            fields = {**base(door, "entry", card, p), "reason": "ok", **extra,
                      **self._answerable(p, area)}  # fmt: skip
            if esc is not None:
                fields.update(reason="escorted", escort=esc.id, escort_name=esc.name)
                self.s.escorts.entered(area, p.id, esc.id)
            out.append(Record("door.granted", fields))
            self._count_in(area, p, now)
            self.s.untapped.identified(area, p.id)
            if p.escort:
                self.s.escorts.went_in(door, p, now.mono)
        self.s.lockout.right(card)
        self.s.closing.entered(area, self.ctx.local(now).date())
        return out + unlock(self.s, door, now, needs_record=True)

    def _answerable(self, p: Person, area: str) -> dict[str, Any]:
        """For the ledger (R1): who answers for this entry (確認者: the person's approver,
        else the area's), and a visitor's company and host, by name as the list has them
        now, so that the signed record says who they were at the time."""
        out: dict[str, Any] = {}
        a = self.ctx.cfg.areas.get(area)
        approver = p.approver or (a.approver if a is not None else None)
        if approver is not None and approver != p.id:
            out["approver"] = approver
            if (q := self.ctx.person(approver)) is not None:
                out["approver_name"] = q.name
        if p.company:
            out["company"] = p.company
        if p.host:
            out["host"] = p.host
            if (h := self.ctx.person(p.host)) is not None:
                out["host_name"] = h.name
        return out

    def escort_expired(self, now: Now) -> list[Action]:
        """Visitors whose escort did not come in time."""
        out: list[Action] = []
        for door, w in self.s.escorts.expired(now.mono):
            out += self.ctx.deny(door, w.card, "escort_needed", w.person)
        return out
