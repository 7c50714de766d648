"""The configuration schema is declared once, and everything about it derives from there:
the reader's bounds and errors, the option reference (docs/config.md, ``edged config
options``) and the annotated example. R3 (the PIN lock-out's attempts and duration) and
R12 (the journal's checkpoints and retention) are options whose bounds a site cannot
write past, and whose documented defaults are the ones that apply."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from edged.core.options import declared
from edged.core.policy import PolicyConfig
from edged.device.config import (
    READ_OTHERWISE,
    SECTIONS,
    JournalConfig,
    load_config,
    option_reference,
)
from edged.errors import ConfigError
from tests.conftest import EDGED

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "config" / "edged.toml"


def known(section: str) -> set[str]:
    cls = next(c for s, c, _ in SECTIONS if s == section)
    return {d.name for d in declared(cls)} | {k for k, *_ in READ_OTHERWISE.get(section, [])}


def test_docs_equal_the_declarations():
    """docs/config.md is the command's output: a changed default or bound shows there."""
    doc = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert doc == option_reference(), "regenerate: edged config options > docs/config.md"
    out = subprocess.run([EDGED, "config", "options"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == doc


def test_reference_states_each_declared_default_and_bound():
    """R3, R12: the reference shows the lock-out and journal defaults the reader applies."""
    doc = option_reference()
    p, j = PolicyConfig(), JournalConfig()
    assert f"| `pin_attempts` | int 1..20 | `{p.pin_attempts}` |" in doc
    assert f"| `lockout_minutes` | float 1..1440 | `{p.lockout_minutes}` |" in doc
    assert f"| `checkpoint_every` | int 1..1000000 | `{j.checkpoint_every}` |" in doc
    assert f"| `keep_days` | float 0..36500 | `{j.keep_days}` |" in doc
    for section, _cls, _ in SECTIONS:
        block = doc.split(f"### [{section}]\n", 1)[1].split("\n### ", 1)[0]
        rows = re.findall(r"^\| `([a-z_]+)` \|", block, re.M)
        assert set(rows) == known(section) and len(rows) == len(set(rows)), section


def example_keys() -> dict[str, set[str]]:
    """Every key of the example's declared sections, set or shown commented out."""
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    keys: dict[str, set[str]] = {}
    for section, _, _ in SECTIONS:
        top, _, each = section.partition(".")
        tables = list(data.get(top, {}).values()) if each else [data.get(top, {})]
        keys[section] = {k for t in tables for k in t}
    # Keys shown commented out ("# key = value"), in a live table or a commented-out one.
    by_top = {s.partition(".")[0]: s for s in keys}
    current = None
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"#?\s*\[([a-z]+)[.\]]", line):
            current = by_top.get(m.group(1))
        elif current and (m := re.match(r"#\s*([a-z_]+)\s*=", line)):
            keys[current].add(m.group(1))
    return keys


def test_example_uses_only_declared_options():
    """The annotated example cannot show an option the reader would refuse."""
    keys = example_keys()
    assert {"broker", "window", "keepalive_seconds", "password_file"} <= keys["sync"]
    assert "witness_dir" in keys["journal"]
    for section, got in keys.items():
        assert got <= known(section), (section, got - known(section))


def test_example_shows_the_declared_defaults():
    """A value shown commented out in the example is the default it stands for."""
    text = EXAMPLE.read_text(encoding="utf-8")
    sync = next(c for s, c, _ in SECTIONS if s == "sync")
    shown = 0
    for d in declared(sync):
        m = re.search(rf"^#\s*{d.name}\s*=\s*([0-9.]+)", text, re.M)
        if m and d.type in (int, float):
            assert d.type(m.group(1)) == d.default, d.name
            shown += 1
    assert shown >= 4


@pytest.mark.parametrize(
    "edit,where",
    [
        (("pin_attempts = 5 ", "pin_attempts = 0 "), "policy.pin_attempts"),
        (("lockout_minutes = 15", "lockout_minutes = 5000"), "policy.lockout_minutes"),
        (("[journal]", "[journal]\nkeep_days = -1"), "journal.keep_days"),
    ],
)
def test_bounds_come_from_the_declaration(tmp_path, edit, where):
    """R3, R12: a lock-out or retention outside the declared bounds is a one-line error."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert edit[0] in text
    bad = tmp_path / "edged.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    assert where in msg and "between" in msg and "\n" not in msg, msg


def test_secret_files_named_in_sync_must_be_private(tmp_path):
    """A key or password file readable by others is refused, naming the key and the fix."""
    for name in ("ca.pem", "collector.pub", "mqtt.password"):
        (tmp_path / name).write_text("x\n", encoding="utf-8")
    (tmp_path / "mqtt.password").chmod(0o644)
    text = EXAMPLE.read_text(encoding="utf-8")
    text += (
        '\n[sync]\nbroker = "localhost:1883"\nusername = "door"\n'
        'password_file = "mqtt.password"\ncollector_pubkey = "collector.pub"\n'
    )
    cfg_file = tmp_path / "edged.toml"
    cfg_file.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"sync\.password_file.*chmod 600"):
        load_config(cfg_file)
    (tmp_path / "mqtt.password").chmod(0o600)
    cfg = load_config(cfg_file)
    assert cfg.sync is not None and cfg.sync.password_file == tmp_path / "mqtt.password"
    assert cfg.sync.broker.username == "door" and cfg.sync.window == 100
