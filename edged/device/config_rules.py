"""The configuration's rules across tables: what no single table can check alone. Each
raises the one-line ConfigError naming the file, the key and the reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edged.errors import ConfigError

if TYPE_CHECKING:
    from edged.device.config import Config


def check_pins_owned_once(cfg: Config) -> None:
    """One pin, one job: a shared pin would make a reed switch read as a door contact."""
    path, gpio, doors, cabinets = cfg.file, cfg.gpio, cfg.doors, cfg.cabinets
    keypads, indicators = cfg.keypads, cfg.indicators
    owners: dict[int, str] = {}
    claims: list[tuple[int | None, str]] = [(gpio.tamper_pin, "gpio.tamper_pin")]
    for door in doors.values():
        claims += [
            (door.relay_pin, f"doors.{door.name}.relay_pin"),
            (door.contact_pin, f"doors.{door.name}.contact_pin"),
            (door.exit_button_pin, f"doors.{door.name}.exit_button_pin"),
        ]
    claims += [(c.pin, f"cabinets.{c.name}.pin") for c in cabinets.values()]
    claims += [(a.presence_pin, f"areas.{a.name}.presence_pin") for a in cfg.areas.values()]
    claims += [(c.lock_pin, f"cabinets.{c.name}.lock_pin") for c in cabinets.values()]
    for kp in keypads.values():
        claims += [(p, f"keypads.{kp.door}.rows") for p in kp.rows]
        claims += [(p, f"keypads.{kp.door}.cols") for p in kp.cols]
    claims += [
        (indicators.buzzer_pin, "indicators.buzzer_pin"),
        (indicators.green_pin, "indicators.green_pin"),
        (indicators.red_pin, "indicators.red_pin"),
    ]
    for pin, where in claims:
        if pin is None:
            continue
        if pin in owners:
            raise ConfigError(f"{path}: {where}: GPIO {pin} is already used by {owners[pin]}")
        owners[pin] = where
