"""The repository's example files as the tests use them: the access list with its dates
moved to the day the tests run (in the site's time zone), so that its story holds on any
day: V0042's right ends within the warning period, S0999's has ended (R5)."""

from __future__ import annotations

import atexit
import datetime as dt
import shutil
import tempfile
import zoneinfo
from pathlib import Path

from edged.device.examples import move_dates

ROOT = Path(__file__).parent.parent.parent
EXAMPLE_CONFIG = ROOT / "config" / "edged.toml"
ACL_SOURCE = ROOT / "config" / "acl-example.toml"
SITE_TZ = zoneinfo.ZoneInfo("Asia/Tokyo")


def site_today() -> dt.date:
    """Today at the example site; the clock the daemon and the CLI judge rights by."""
    return dt.datetime.now(SITE_TZ).date()


def example_acl_text(extra: str = "", today: dt.date | None = None) -> str:
    """The example list and ``extra`` people (written as of the example's day), moved."""
    text = ACL_SOURCE.read_text(encoding="utf-8") + extra
    return move_dates(text, today or site_today(), source=str(ACL_SOURCE))


def _write_once() -> Path:
    d = Path(tempfile.mkdtemp(prefix="edged-examples-"))
    atexit.register(shutil.rmtree, d, True)
    path = d / "acl-example.toml"
    path.write_text(example_acl_text(), encoding="utf-8")
    return path


# One file per test process, written as it starts; read-only for the tests.
EXAMPLE_ACL = _write_once()
