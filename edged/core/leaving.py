"""Going out (R1, R6, R18; Invariant 4: exit is never blocked): a card at the exit
reader, what is declared taken out and who approves it, the exit button, and who the
last leaver is. A sub-machine of the core: it writes the count of who is inside (through
:mod:`edged.core.presence`), the carry-out dialogues and the last-out offers, hands the
last leaver to :class:`~edged.core.lockcheck.LockCheck`, and returns actions.
"""

from __future__ import annotations

from typing import Any

from edged.core.access import card_gate
from edged.core.actions import Action, Indicate, Record, Step
from edged.core.context import Context, unlock
from edged.core.events import CardPresented, ExitButton
from edged.core.lockcheck import LockCheck
from edged.core.policy import CARRY_IN
from edged.core.presence import count_out, escort_left
from edged.core.state import NS, CoreState, Now, Prompt, outputs

# Who may confirm the last leaver's lock check: a visitor is never the one who vouches
# that the cabinets are locked (R2, R6).
CONFIRM_ROLES = frozenset({"staff", "admin"})


class Leaving:
    def __init__(self, ctx: Context, state: CoreState, lockcheck: LockCheck) -> None:
        self.ctx, self.s, self.lockcheck = ctx, state, lockcheck

    def card(
        self, door: str, card: str, now: Now, carry: dict[str, Any] | None = None,
        *, genuine: bool = True,
    ) -> list[Action]:  # fmt: skip
        """A card at the exit reader. ``carry``: what was declared taken out (R18), once
        the carry-out questions are answered (asked first where the area says so). A card
        that is not ``genuine`` (an identifier alone where the area takes proven cards)
        still opens the door from inside, but counts nobody out and answers no prompt:
        validity is not asked here, so that a right that ended while inside still lets its
        holder leave and be counted out."""
        ctx, s = self.ctx, self.s
        area = ctx.cfg.doors[door].area
        p = ctx.by_card(card)
        inside = s.occupancy.setdefault(area, {})
        s.untapped.taken(door)  # a card at the exit reader answers the offer
        if not genuine or p is None or p.id not in inside:
            # Not counted out, but the door opens all the same: a card of a kind the area
            # does not take, unknown, or not counted inside (tailgated in).
            why = ("card_kind_not_allowed" if not genuine
                   else "unknown_card" if p is None else "not_inside")  # fmt: skip
            f = {**ctx.base(door, "exit", card, p), "was_inside": False, "reason": why}
            return [Record("door.exit", f), *unlock(s, door, now, needs_record=False)]
        a = ctx.cfg.areas.get(area)
        if carry is None and a is not None and a.carry_out and door in ctx.cfg.keypads:
            steps: list[Step] = ["carry_out"]
            deadline = ctx.prompt_deadline(now, door, steps)
            s.prompts[door] = Prompt(door, area, p, card, steps, deadline)
            return [Indicate("green", True, blink=True)]
        carry = carry or {}
        s.untapped.identified(area, p.id)
        # The last one out: nobody else counted inside, or nobody else known to be there
        # (everyone else counted was in the room at an exit without a tap).
        others = set(inside) - {p.id}
        last = not others or s.untapped.all_uncertain(area, others)
        if last and ctx.area_cabinets(area):
            pr = Prompt(door, area, p, card, [], 0)
            if p.role not in CONFIRM_ROLES:
                # Out they go (never trapped), but nobody vouched for the cabinets.
                return self.lockcheck.missed(pr, now, "role_cannot_confirm", carry)
            return self.lockcheck.start(pr, now, carry)
        count_out(s, area, p.id)
        f = {**ctx.base(door, "exit", card, p), "was_inside": True, **carry}
        return [
            Record("door.exit", f),
            *escort_left(ctx, s, area, p, door),
            *unlock(s, door, now, needs_record=False),
        ]

    def key(self, pr: Prompt, entered: str, now: Now) -> list[Action]:
        """What was entered at a step on the way out."""
        if pr.step == "lockcheck":
            return self.lockcheck.entered(pr, entered, now)
        if pr.step == "carry_out":
            return self._carry_out_entered(pr, entered, now)
        return []  # carry_out_approval waits for the approver's card, not for keys

    def ended(self, pr: Prompt, now: Now, why: str) -> list[Action]:
        """A dialogue on the way out cut short (another card, or its time ran out)."""
        if pr.step == "lockcheck":
            return self.lockcheck.timed_out(pr, now) if why == "timeout" else (
                self.lockcheck.cancelled(pr))  # fmt: skip
        return self._carry_out_unfinished(pr, now, why)

    # -- taking things out (R18) ----------------------------------------------------
    def _carry_out_entered(self, pr: Prompt, entered: str, now: Now) -> list[Action]:
        if entered not in CARRY_IN:
            pr.deadline = self.ctx.prompt_deadline(now, pr.door, pr.steps)  # ask again
            return []
        item = CARRY_IN[entered]
        if item == "none" or not self.ctx.cfg.areas[pr.area].carry_out_approval:
            self.s.prompts.pop(pr.door, None)
            return self.card(pr.door, pr.card, now, {"carry_out": item})
        # A second card, of someone inside with the right to approve, within the escort
        # window; the leaver waits at the door meanwhile (the exit button always opens).
        pr.collected["carry_out"] = item
        pr.steps = ["carry_out_approval"]
        pr.deadline = now.mono + int(self.ctx.cfg.policy.escort_seconds * NS)
        return [Indicate("green", True, blink=True)]

    def approver(self, pr: Prompt, ev: CardPresented, now: Now) -> list[Action]:
        """A card at the exit reader while a carry-out waits for its approver."""
        q, reason = card_gate(self.ctx, self.s.lockout, pr.area, ev, now)
        f: dict[str, Any] = {"door": pr.door, "area": pr.area, "person": pr.person.id,
                             "item": pr.collected["carry_out"], "card": ev.card}  # fmt: skip
        if q is not None:
            f.update(approver=q.id, approver_name=q.name)
        why: str | None = reason
        if why is None:
            assert q is not None
            why = (
                "self" if q.id == pr.person.id
                else "not_approver" if not q.approves_carry_out
                else "not_inside" if q.id not in self.s.occupancy.get(pr.area, {})
                else None
            )  # fmt: skip
        if why is not None:
            return [Record("carry_out.refused", {**f, "reason": why})]  # still waiting
        assert q is not None
        self.s.prompts.pop(pr.door, None)
        carry = {"carry_out": f["item"], "carry_out_approver": q.id,
                 "carry_out_approver_name": q.name}  # fmt: skip
        return [
            Record("carry_out.approved", {**f, "name": pr.person.name}),
            *self.card(pr.door, pr.card, now, carry),
        ]

    def _carry_out_unfinished(self, pr: Prompt, now: Now, why: str) -> list[Action]:
        """The questions were not finished: out they go all the same (never trapped),
        with what is known; an item declared but not approved is an alarm."""
        self.s.prompts.pop(pr.door, None)
        item = pr.collected.get("carry_out")
        out: list[Action] = []
        if item is not None:
            f = {"door": pr.door, "area": pr.area, "person": pr.person.id,
                 "name": pr.person.name, "item": item, "why": why}  # fmt: skip
            out.append(Record("alarm.carry_out_unapproved", f))
        carry = {"carry_out": item or "undeclared", "carry_out_unfinished": why}
        return [*out, *self.card(pr.door, pr.card, now, carry), *outputs(self.s)]

    # -- the exit button -------------------------------------------------------------
    def button(self, ev: ExitButton, now: Now) -> list[Action]:
        """The door opens (Invariant 4). Nobody is identified, so it is never silent:
        the record names who may have left, their count turns uncertain, and a door with
        an exit reader offers the last-out check (:mod:`edged.core.occupancy`)."""
        if ev.door not in self.s.doors:
            return [Record("event.unknown_door", {"door": ev.door})]
        d = self.ctx.cfg.doors[ev.door]
        inside = sorted(self.s.occupancy.get(d.area, {}))
        fields: dict[str, Any] = {"door": ev.door, "area": d.area, "person": None}
        if inside:
            fields["may_have_left"] = inside
        wait = int(self.ctx.cfg.policy.lockcheck_seconds * NS)
        deadline = now.mono + wait if d.exit_reader else None
        offer = self.s.untapped.exit_without_tap(ev.door, d.area, inside, deadline)
        if offer is not None:
            fields["last_out_offered"] = True
        return [
            Record("door.exit_request", fields),
            *unlock(self.s, ev.door, now, needs_record=False),
            *(outputs(self.s) if offer is not None else []),
        ]

    def unanswered(self, now: Now) -> list[Action]:
        """Last-out offers nobody took: an alarm where the area requires tapping out."""
        out: list[Action] = []
        for u in self.s.untapped.tick(now.mono):
            o = u.offer
            if self.ctx.cfg.areas[o.area].tap_out == "required":
                who = {"door": o.door, "area": o.area, "may_have_left": list(o.inside)}
                out.append(Record("alarm.exit_without_tap", who))
            out += outputs(self.s)
        return out
