"""Bad input at the command line gets one line naming the file and the reason, never a
traceback; the ledger's format follows its file name; an empty period is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edged.clock import FakeClock
from edged.device.journal import Journal
from edged.device.keys import init_keys, load_keys
from tests.conftest import EDGED

pytestmark = pytest.mark.integration


NOVEMBER = ("2026-11-01", "2026-11-30")


def edged(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EDGED, *args], capture_output=True, text=True, timeout=60)


def report(
    db: Path, *extra: str, period: tuple[str, str] = NOVEMBER
) -> subprocess.CompletedProcess:
    return edged("report", "--db", str(db), "--from", period[0], "--to", period[1], *extra)


def one_line_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edged: error: "), p.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture
def journal_db(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    init_keys(state)
    clock = FakeClock(wall=1_795_000_000_000)  # 2026-11-18
    with Journal(state / "journal.db", load_keys(state), clock, site="s", device="d") as j:
        j.append("door.exit_request", door="main", area="handling", person=None)
    return state / "journal.db"


def test_unwritable_or_missing_paths_are_one_line_errors(tmp_path, journal_db):
    """Before: tracebacks from keys init, report --out and acl publish."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    one_line_error(edged("keys", "init", "--state-dir", str(blocker / "state")), str(blocker))
    one_line_error(report(journal_db, "--out", str(tmp_path / "missing" / "x.html")), "missing")
    one_line_error(
        edged("acl", "publish", str(tmp_path / "missing.json"), "--broker", "127.0.0.1:1"),
        "missing.json",
    )
    # Not JSON, and JSON that is not a list: one line, nothing sent.
    for name, text in (("garbage.json", "{not json"), ("other.json", '{"a": 1}')):
        (tmp_path / name).write_text(text)
        one_line_error(
            edged("acl", "publish", str(tmp_path / name), "--broker", "127.0.0.1:1"),
            name,
            "not a signed access list",
        )


def test_a_missing_journal_is_named_as_such(tmp_path):
    """Before: "public key file not found", about the key beside the missing journal.
    (verify and report keep their own one-line ``ERROR:`` form: verify's is on stdout,
    beside its --json answer.)"""
    for cmd in (["verify"], ["report", "--from", "2026-11-01", "--to", "2026-11-30"]):
        p = edged(*cmd, "--db", str(tmp_path / "nowhere" / "journal.db"))
        text = (p.stdout + p.stderr).replace("using the public key", "").strip()
        assert p.returncode == 2 and "Traceback" not in text, text
        errors = [ln for ln in text.splitlines() if ln.startswith("ERROR:")]
        assert len(errors) == 1 and "no journal there" in errors[0], text
        assert "public key" not in errors[0]


def test_the_ledger_format_follows_the_file_name_and_periods_run_forwards(tmp_path, journal_db):
    out = tmp_path / "ledger.csv"
    p = report(journal_db, "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert not out.read_text().lstrip().startswith("<")  # CSV, not HTML
    html = tmp_path / "ledger.html"
    report(journal_db, "--out", str(html))
    assert html.read_text().lstrip().lower().startswith("<!doctype html")
    one_line_error(
        report(journal_db, period=(NOVEMBER[1], NOVEMBER[0])),
        "after --to",
    )


def test_every_option_has_a_help_line_with_its_default():
    """Every subcommand's options say what they are; a real default is shown."""
    import argparse

    from edged.cli import build_parser

    def walk(p, path):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sp in a.choices.items():
                    yield from walk(sp, [*path, name])
            elif not isinstance(a, argparse._HelpAction):
                yield " ".join(path), a

    missing = [f"{cmd} {a.dest}" for cmd, a in walk(build_parser(), ["edged"]) if not a.help]
    assert missing == []

    def helptext(*cmd: str) -> str:
        return " ".join(edged(*cmd, "--help").stdout.split())  # unwrapped

    assert "(default: /etc/edged/edged.toml)" in helptext("doctor")
    assert "(default: entry)" in helptext("sim", "tap")
    assert "(default: )" not in helptext("report")


def test_a_central_store_that_cannot_be_opened_is_one_line(tmp_path):
    """Before: a traceback (sqlite3.OperationalError) from console, collect and report
    --store naming a file in a missing directory, or a directory."""
    from edged.protocol.keys import init_role_key

    init_role_key(tmp_path / "c", "collector")
    key = str(tmp_path / "c" / "collector_ed25519.key")
    missing = str(tmp_path / "no" / "such" / "central.db")
    for store, needle in ((missing, "no directory"), (str(tmp_path), "not a database file")):
        one_line_error(edged("console", "--store", store), needle)
        one_line_error(edged("report", "--store", store, "--site", "tokyo"), needle)
        one_line_error(edged("collect", "--broker", "127.0.0.1:1", "--store", store,
                             "--trust", str(tmp_path), "--key", key), needle)  # fmt: skip


def test_a_console_on_plain_http_beyond_loopback_refuses_to_start(tmp_path):
    """Before: it started, and every login then failed with a bare "bad CSRF token" (the
    Secure session cookie is dropped over plain HTTP). Loopback, TLS or a named reverse
    proxy are the ways it starts."""
    p = edged("console", "--store", str(tmp_path / "c.db"), "--listen", "0.0.0.0:8443")
    one_line_error(p, "plain HTTP on a non-loopback address", "--cert-file", "--trusted-proxy")


def test_the_version_is_one_line():
    """Issue 40: `edged --version`, as tools people like answer it."""
    from edged import __version__

    p = edged("--version")
    assert p.returncode == 0 and p.stdout == f"edged {__version__}\n", p.stdout + p.stderr
