"""The pure core: events in, actions out. No I/O, no wall clock (Invariant 3)."""

from edged.core.actions import Action, Indicate, Record, SetCabinetLock, SetLock
from edged.core.machine import Core

__all__ = ["Action", "Core", "Indicate", "Record", "SetCabinetLock", "SetLock"]
