"""Configuration validation and backend selection: clear errors, never a traceback (Invariant 5)."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from edged.device.config import load_config
from edged.device.hardware import backend_names, load_backend, make_device
from edged.errors import ConfigError, DriverInitError
from tests.conftest import EDGED

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "config" / "edged.toml"


def test_example_config_loads():
    cfg = load_config(EXAMPLE)
    assert cfg.site == "tokyo-hq" and set(cfg.doors) == {"main", "server"}
    assert set(cfg.cabinets) == {"cab-a", "cab-b", "rack-back"}
    assert set(cfg.keypads) == {"main", "server"} and cfg.keypads["main"].backend == "matrix"
    assert cfg.doors["main"].mode == "fail_secure"
    assert cfg.areas["server-room"].kind == "management"
    assert cfg.areas["server-room"].pin_required and not cfg.areas["handling"].pin_required
    assert cfg.calendar.country == "JP"
    assert cfg.calendar.closed[dt.date(2026, 12, 29)] == "年末休業"


@pytest.mark.parametrize(
    "edit,where,reason",
    [
        (("unlock_seconds = 5", "unlock_seconds = 500"), "doors.main.unlock_seconds", "between"),
        (("relay_pin = 17", "relay_pin = 40"), "doors.main.relay_pin", "0..27"),
        (("relay_pin = 17", 'relay_pin = "17"'), "doors.main.relay_pin", "expected an integer"),
        (("pin = 13", "pin = 6"), "cabinets.rack-back.pin", "already used by cabinets.cab-a.pin"),
        (("[keypads.server]", "[keypads.lobby]"), "keypads.lobby", "no door 'lobby'"),
        (("[displays.main]", "[displays.lobby]"), "displays.lobby", "no door 'lobby'"),
        (('size = "16x2"', 'size = "40x4"'), "displays.main.size", "must be one of"),
        (("lock_pin = 10", "lock_pin = 17"), "cabinets.rack-back.lock_pin", "already used"),
        (
            ('timezone = "Asia/Tokyo"', 'timezone = "Mars/Base"'),
            "clock.timezone",
            "unknown time zone",
        ),
        (('1 = "payroll"', 'x1 = "payroll"'), "areas.handling.purposes.x1", "1-3 digits"),
        (('mode = "fail_secure"', 'mode = "open"'), "doors.main.mode", "must be one of"),
        (("debounce_ms = 20", "debounce_ms = 20\nbounce = 3"), "gpio.bounce", "unknown key"),
        (
            ('entry_reader = "entry"', 'entry_reader = "lobby"'),
            "doors.main.entry_reader",
            "no reader 'lobby'",
        ),
        (
            ('area = "handling"\nentry', 'area = "nowhere"\nentry'),
            "doors.main.area",
            "no area 'nowhere'",
        ),
        (('site = "tokyo-hq"', ""), "site", "required key is missing"),
        (("pull_up = true", "pull_up = 1"), "gpio.pull_up", "expected true or false"),
        (('country = "JP"', 'country = "XX"'), "calendar.country", "no holidays known"),
        (('"2026-12-29" = ', '"29 Dec" = '), "calendar.closed_days.29 Dec", "YYYY-MM-DD"),
        (
            ('"2026-12-29" = "年末休業"', '"2026-12-29" = 1'),
            "calendar.closed_days.2026-12-29",
            "expected a string",
        ),
        (("[readers.exit]", '[readers."Exit!"]'), "readers.Exit!", "names are"),
        (
            ('pcsc_name = "SONY FeliCa RC-S300/P (0000002)"', 'pcsc_name = "SONY FeliCa"'),
            "readers.exit.pcsc_name",
            "could name the same reader",
        ),
    ],
)
def test_errors_name_file_key_and_reason(tmp_path, edit, where, reason):
    """Invariant 5: a bad config names the file, the key path and the reason."""
    text = EXAMPLE.read_text()
    assert edit[0] in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    assert msg.startswith(f"{bad}: {where}: ") and reason in msg, msg


def test_not_toml_and_missing_file(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text("site = [unclosed")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "none.toml")


def test_config_check_command(tmp_path):
    ok = subprocess.run([EDGED, "config", "check", str(EXAMPLE)], capture_output=True, text=True)
    assert ok.returncode == 0 and "OK: site tokyo-hq" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("relay_pin = 17", "relay_pin = -1"))
    p = subprocess.run([EDGED, "config", "check", str(bad)], capture_output=True, text=True)
    assert p.returncode == 2 and "doors.main.relay_pin" in p.stderr
    assert "Traceback" not in p.stderr


def test_backends_by_name_with_clear_errors():
    assert "pcsc" in backend_names("card_reader")
    assert load_backend("card_reader", "pcsc").__name__ == "PcscCardReader"
    with pytest.raises(DriverInitError, match=r"unknown backend 'nfc'.*\['pcsc'\]"):
        load_backend("card_reader", "nfc")
    with pytest.raises(DriverInitError, match="keypad: need 4 rows"):
        make_device("keypad", "matrix", rows=(1, 2), cols=(3,))
    with pytest.raises(DriverInitError, match="keypad backend 'matrix' failed to start"):
        make_device("keypad", "matrix", rows=(1, 2, 3, 4), cols=(5, 6, 7), colour="red")


def test_evdev_keypad_without_device_is_a_clear_error():
    from edged.drivers.evdev_keypad import key_symbol

    with pytest.raises(DriverInitError, match="keypad"):
        make_device("keypad", "evdev", device="/dev/input/does-not-exist")
    assert key_symbol("KEY_KP5") == "5" and key_symbol(["KEY_ENTER", "KEY_X"]) == "#"
    assert key_symbol("KEY_ESC") == "*" and key_symbol("KEY_A") is None


def test_hardware_without_the_device_extra_is_a_clear_error(monkeypatch, tmp_path):
    """A base install (no edged[device]) asked to drive hardware says which extra it
    needs, instead of dying on a ModuleNotFoundError (found by the install-script test)."""
    import sys

    from edged.clock import SystemClock
    from edged.device.paths import StatePaths
    from edged.device.wiring import build_installation

    monkeypatch.setitem(sys.modules, "edged.drivers.gpio", None)  # import raises ImportError
    with pytest.raises(DriverInitError, match=r"cannot load edged\.drivers\.gpio.*edged\[device\]"):
        build_installation(
            "hardware", load_config(EXAMPLE), StatePaths(tmp_path), SystemClock(), str
        )


def _with_path(tmp_path: Path, field: str, value: str) -> Path:
    """The example with ``field`` (a path field) set to ``value`` (a TOML basic string)."""
    import re

    text = EXAMPLE.read_text()
    if field == "state_dir":
        text = re.sub(r"(?m)^state_dir = .*$", lambda _m: f"state_dir = {value}", text)
    elif field == "journal.witness_dir":
        text = text.replace("[journal]\n", f"[journal]\nwitness_dir = {value}\n", 1)
    elif field == "cards.desfire.master_key":
        text += f'\n[cards.desfire]\naid = "E1D6E0"\nmaster_key = {value}\n'
    else:  # sync.ca_file
        (tmp_path / "collector.pub").write_text("x")
        text += (
            f'\n[sync]\nbroker = "localhost:8883"\ntls = true\nca_file = {value}\n'
            'collector_pubkey = "collector.pub"\n'
        )
    path = tmp_path / "edged.toml"
    path.write_text(text)
    return path


@pytest.fixture
def odd_paths(tmp_path):
    """A file, a symlink loop and a directory to name where the other kind is wanted."""
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    return tmp_path


DIR_FIELDS = ("state_dir", "journal.witness_dir")
FILE_FIELDS = ("cards.desfire.master_key", "sync.ca_file")
ODD = [
    ('""', "must name a", None),
    ('"\\u0000x"', "contains a NUL character", None),
    ('"."', "of its own, not '.'", None),
    ('"/"', "of its own, not '/'", None),
    ('"/srv/.."', "of its own", None),
    ("LOOP", "Too many levels of symbolic links", None),
]


@pytest.mark.parametrize("field", DIR_FIELDS + FILE_FIELDS)
@pytest.mark.parametrize("value,reason,_", ODD)
def test_odd_path_fields_name_file_field_and_reason(odd_paths, field, value, reason, _):
    """Invariant 5 (issue 24): every path field, empty or odd, is refused in one line that
    names the file, the field and the reason; never a traceback (it was `ValueError:
    PosixPath('.') has an empty name` for state_dir = "")."""
    value = value.replace("LOOP", f'"{odd_paths / "loop-a"}"')
    cfg = _with_path(odd_paths, field, value)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    msg = str(e.value)
    assert msg.startswith(f"{cfg}: {field}: ") and reason in msg and "\n" not in msg, msg


@pytest.mark.parametrize("field", DIR_FIELDS)
def test_a_directory_field_refuses_a_file_and_a_relative_name(odd_paths, field):
    """Invariant 5: a state or witness directory that is a file, or is named relative to
    whatever directory the daemon was started in, is refused."""
    cfg = _with_path(odd_paths, field, f'"{odd_paths / "a-file"}"')
    with pytest.raises(ConfigError, match=f"^{cfg}: {field}: .*a-file exists and is not a dir"):
        load_config(cfg)
    cfg = _with_path(odd_paths, field, '"state"')
    with pytest.raises(ConfigError, match=f"^{cfg}: {field}: must be an absolute path"):
        load_config(cfg)


@pytest.mark.parametrize("field", FILE_FIELDS)
def test_a_file_field_refuses_a_directory(odd_paths, field):
    cfg = _with_path(odd_paths, field, f'"{odd_paths / "a-dir"}"')
    with pytest.raises(ConfigError, match=f"^{cfg}: {field}: .*a-dir is a directory"):
        load_config(cfg)


def test_state_dir_override_is_checked_too(odd_paths):
    """--state-dir, which replaces the configured one, gets the same checks."""
    for bad, reason in ((odd_paths / "a-file", "is not a directory"), ("/", "of its own")):
        with pytest.raises(ConfigError, match=f"^--state-dir: .*{reason}"):
            load_config(EXAMPLE, state_dir=Path(bad))


@pytest.mark.parametrize("value", ['""', '"\\u0000x"', '"."'])
@pytest.mark.parametrize(
    "command",
    [
        ["config", "check", "{cfg}"],
        ["doctor", "--config", "{cfg}"],
        ["run", "--config", "{cfg}", "--simulate"],
        ["acl", "show", "--config", "{cfg}"],
    ],
)
def test_every_command_reading_the_config_gives_the_one_line_error(tmp_path, value, command):
    """Invariant 5, R12 (issue 26): `config check`, `doctor` and `edged run` (which
    tracebacked on state_dir = "" and "\\u0000x") name the file, the field and the reason
    in one line, and exit non-zero."""
    cfg = _with_path(tmp_path, "state_dir", value)
    p = subprocess.run(
        [EDGED, *(a.format(cfg=cfg) for a in command)], capture_output=True, text=True, timeout=60
    )
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "Traceback" not in out, out
    line = next(ln for ln in out.splitlines() if f"{cfg}: state_dir: " in ln)
    assert "directory" in line or "NUL" in line, out


def test_one_registry_names_every_backend_and_the_config_offers_exactly_those(tmp_path):
    """Every name in the registry loads (or says which package is missing, never a
    traceback); an unknown keypad, display, pin factory or installation is refused with
    the registry's own list of names, by the config and by the factories."""
    from edged.drivers.gpio import make_pin_factory

    from edged.device import backends
    from edged.device.wiring import build_installation

    for interface, entries in backends.BACKENDS.items():
        for name in entries:
            try:
                got = backends.load(interface, name)
            except DriverInitError as e:
                assert "cannot load" in str(e) and "is its package installed" in str(e)
            else:
                assert got is not None or name == "default"
    assert type(make_pin_factory("mock")).__name__ == "MockFactory"
    with pytest.raises(DriverInitError, match=r"pin_factory: unknown backend 'gpiod'"):
        make_pin_factory("gpiod")
    with pytest.raises(DriverInitError, match=r"installation: unknown backend 'cloud'.*"
                       r"\['hardware', 'sim'\]"):  # fmt: skip
        build_installation("cloud", None, None, None, None)  # type: ignore[arg-type]
    text = EXAMPLE.read_text()
    for old, new, where, interface in [
        ('backend = "matrix"', 'backend = "bogus"', "keypads.main.backend", "keypad"),
        ('backend = "default"', 'backend = "bogus"', "gpio.backend", "pin_factory"),
    ]:
        assert old in text, old
        bad = tmp_path / "bad.toml"
        bad.write_text(text.replace(old, new, 1))
        with pytest.raises(ConfigError) as e:
            load_config(bad)
        assert where in str(e.value) and str(list(backends.names(interface))) in str(e.value)
