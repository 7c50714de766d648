"""The door's lights and buzzer from the core's state: one pure rule (R8)."""

from __future__ import annotations

from edged.core.actions import Action, Indicate


def indicators(*, alarm: bool, attention: bool, unlocked: bool, waiting: bool) -> list[Action]:
    """Red and buzzer: steady for an alarm, blinking for attention (a cabinet left open
    at the lock check). Green: steady while a door is unlocked, blinking while the keypad
    or an escort is awaited."""
    return [
        Indicate("red", alarm or attention, blink=attention and not alarm),
        Indicate("buzzer", alarm or attention, blink=attention and not alarm),
        Indicate("green", unlocked or waiting, blink=waiting and not unlocked),
    ]
