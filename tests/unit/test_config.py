"""The device's configuration reader (edged/device/config.py), on its own: the example
parses to the declared defaults, and each kind of mistake is one line naming the file,
the key and the reason, never a traceback (R3 and R12 bounds included)."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from edged.core.options import declared
from edged.core.policy import PolicyConfig
from edged.device.config import JournalConfig, parse_config
from edged.errors import ConfigError

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).parents[2] / "config" / "edged.toml"
BASE = tomllib.loads(EXAMPLE.read_text())


def parse(mutate=None, state_dir: Path | None = None):
    d = copy.deepcopy(BASE)
    if mutate is not None:
        mutate(d)
    return parse_config(d, Path("site.toml"), state_dir=state_dir)


def error(mutate) -> str:
    with pytest.raises(ConfigError) as e:
        parse(mutate)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("site.toml: "), msg
    return msg


def test_the_example_parses_and_absent_options_take_their_declared_defaults():
    """R3, R12: what the example leaves out is the declared default."""
    cfg = parse()
    assert (cfg.site, cfg.device) == ("tokyo-hq", "door-3f-1")
    for cls, section, got in ((PolicyConfig, "policy", cfg.policy),
                              (JournalConfig, "journal", cfg.journal)):  # fmt: skip
        for d in declared(cls):
            if d.name not in BASE.get(section, {}) and not d.required:
                assert getattr(got, d.name) == d.default, (section, d.name)
    assert set(cfg.doors) == {"main", "server"} and set(cfg.cabinets) >= {"cab-a"}


@pytest.mark.parametrize(
    ("mutate", "want"),
    [
        (lambda d: d["policy"].update(pin_attempts=0),
         "policy.pin_attempts: must be between 1 and 20, got 0"),
        (lambda d: d["policy"].update(pin_attempts=21), "policy.pin_attempts: must be between"),
        (lambda d: d["policy"].update(pin_attempts="5"), "policy.pin_attempts: expected"),
        (lambda d: d["policy"].update(bogus=1), "policy.bogus: unknown key"),
        (lambda d: d["journal"].update(checkpoint_every=0), "journal.checkpoint_every:"),
        (lambda d: d["gpio"].update(tamper_pin=99), "gpio.tamper_pin: GPIO pin must be 0..27"),
        (lambda d: d["gpio"].update(tamper_pin=17), "GPIO 17 is already used by"),
        (lambda d: d["clock"].update(when_unsynced="maybe"), "clock.when_unsynced:"),
        (lambda d: d["doors"]["main"].update(area="nowhere"), "nowhere"),
        (lambda d: d.pop("site"), "site"),
        (lambda d: d.update(site="tokyo/hq"), "site"),
        (lambda d: d["areas"]["handling"].update(presence_pin=17),
         "areas.handling.presence_pin: GPIO 17 is already used by doors.main.relay_pin"),
        (lambda d: d["areas"]["handling"].update(reset_time="3am"),
         "areas.handling.reset_time: expected HH:MM, got '3am'"),
    ],
    ids=["below", "above", "type", "unknown", "journal", "pin-range", "pin-twice",
         "choice", "area", "missing", "name", "presence-pin", "reset-time"],
)
def test_each_mistake_is_one_line_naming_the_key_and_reason(mutate, want):
    """R3, R12: bounds a site cannot write past; every refusal names file, key, reason."""
    assert want in error(mutate)


def test_the_witness_directory_must_lie_outside_the_state_directory(tmp_path):
    """R10, R14: a journal and its witness in one directory go back together."""
    state = tmp_path / "state"

    def inside(d):
        d["state_dir"] = str(state)
        d["journal"]["witness_dir"] = str(state / "witness")

    assert "witness_dir" in error(inside)
    cfg = parse(lambda d: d.update(state_dir=str(state)))
    assert cfg.journal.witness_dir is None or not str(cfg.journal.witness_dir).startswith(
        str(state) + "/"
    )


def test_a_closing_time_that_does_not_parse_is_one_line():
    """R6: closing_time is HH:MM; anything else names the area's key."""

    def bad(d):
        d["areas"]["handling"]["closing_time"] = "7pm"

    assert "areas.handling.closing_time: expected HH:MM, got '7pm'" in error(bad)
    ok = parse(lambda d: d["areas"]["handling"].update(closing_time="19:00"))
    assert ok.areas["handling"].closing_time == "19:00"


# Each declared table and where the example shows it (a NAME table: its first instance).
EXAMPLE_TABLES = {"gpio": "gpio", "clock": "clock", "policy": "policy", "journal": "journal",
                  "areas.NAME": "areas.handling", "doors.NAME": "doors.main",
                  "cabinets.NAME": "cabinets.cab-a", "keypads.DOOR": "keypads.main",
                  "displays.DOOR": "displays.main", "indicators": "indicators",
                  "sync": "sync"}  # fmt: skip


def example_tables() -> dict[str, dict[str, tuple[bool, str]]]:
    """table -> key -> (shown as its default: commented out in a table that is in force,
    the line's ``key = value`` text), from the example as written. A commented-out table
    counts, with its keys, as an example of values (not of defaults)."""
    import re

    out: dict[str, dict[str, tuple[bool, str]]] = {}
    table, table_off = "", False
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^(#\s*)?\[([\w.\-]+)\]", line):
            table, table_off = m.group(2), bool(m.group(1))
            continue
        if m := re.match(r"^(#\s*)?([a-z_]+)\s*=\s*(.*?)\s*(#.*)?$", line):
            default = bool(m.group(1)) and not table_off
            out.setdefault(table, {}).setdefault(m.group(2), (default,
                                                             f"{m.group(2)} = {m.group(3)}"))
    return out


def test_the_example_shows_every_declared_option_and_its_commented_defaults_are_true():
    """Issue 36: the annotated example and the declarations cannot drift: each declared
    option of each table is in the example (set, or commented out), and a commented-out
    line shows the declared default (an administrator uncommenting it changes nothing)."""
    import tomllib

    from edged.device.config import SECTIONS

    shown = example_tables()
    missing, wrong = [], []
    for section, cls, _more in SECTIONS:
        keys = shown.get(EXAMPLE_TABLES[section], {})
        for d in declared(cls):
            if d.name not in keys:
                missing.append(f"[{EXAMPLE_TABLES[section]}] {d.name}")
                continue
            commented, text = keys[d.name]
            if commented and d.default is not None and not d.required:
                try:
                    value = tomllib.loads(text)[d.name]
                except tomllib.TOMLDecodeError:
                    continue  # an example in words, not a value
                if value != d.default and not (isinstance(d.default, Path)
                                               and Path(value) == d.default):  # fmt: skip
                    wrong.append(f"[{EXAMPLE_TABLES[section]}] {text} (default {d.default!r})")
    assert missing == [] and wrong == [], (missing, wrong)


def test_the_broker_address_is_read_by_the_one_parser_the_collector_uses(tmp_path):
    """R13: [sync] broker is HOST:PORT as everywhere else (an IPv6 host in brackets); a
    malformed one is one line naming the key."""
    pub = tmp_path / "collector.pub"
    pub.write_text("x")

    def sync(address):
        return lambda d: d.update(sync={"broker": address, "collector_pubkey": str(pub)})

    cfg = parse(sync("[fd00::1]:8883"), state_dir=tmp_path / "st")
    assert (cfg.sync.broker.host, cfg.sync.broker.port) == ("fd00::1", 8883)
    for bad in ("mqtt.example", "mqtt:0", ":1883", "mqtt:port"):
        with pytest.raises(ConfigError) as e:
            parse(sync(bad), state_dir=tmp_path / "st")
        assert f"sync.broker: expected HOST:PORT, got {bad!r}" in str(e.value)
