"""What is installed is what runs: the wheel, installed into a clean virtualenv (not
editable), holds every module and data file; every module imports; the demo runs."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import require_pcscd
from tests.helpers.build import run, tree_copy

pytestmark = pytest.mark.system

ROOT = Path(__file__).parents[2]


def packages_in_tree() -> set[str]:
    """Every package of the repository, named as installed (drivers/ -> edged/drivers)."""
    out = set()
    for base, pkg in (
        ("edged", "edged"),
        ("drivers", "edged/drivers"),
        ("simulators", "edged/simulators"),
    ):
        for d, _dirs, files in os.walk(ROOT / base):
            if "__init__.py" in files and "__pycache__" not in d:
                rel = os.path.relpath(d, ROOT / base)
                out.add(pkg if rel == "." else f"{pkg}/{rel}")
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the tree without build/ (setuptools keeps modules that were
    moved or deleted in build/lib and would ship them: a wheel once held a stale
    edged/collector.py)."""
    src = tmp_path_factory.mktemp("src") / "edged"
    tree_copy(src)
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, src)
    [whl] = out.glob("edged-*.whl")
    return whl


def test_the_wheel_holds_every_package_and_data_file(wheel):
    """A wheel once lacked edged.core and edged.sync (a hand-kept list): now every package
    of the tree is in it, with the example configuration the demo reads, and nothing of
    the tests."""
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [p for p in packages_in_tree() if f"{p}/__init__.py" not in names]
    assert missing == []
    assert {"edged/examples/edged.toml", "edged/examples/acl-example.toml"} <= names
    assert not [n for n in names if n.startswith("tests/")]
    # Nothing but what the tree holds: no module the tree no longer has.
    in_tree = {
        f"{pkg}/{rel}"
        for base, pkg in (
            ("edged", "edged"),
            ("drivers", "edged/drivers"),
            ("simulators", "edged/simulators"),
        )
        for rel in (str(p.relative_to(ROOT / base)) for p in (ROOT / base).rglob("*.py"))
    }
    shipped = {n for n in names if n.endswith(".py") and not n.startswith("edged/examples/")}
    assert shipped - in_tree == set()
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: Apache-2.0" in text
    assert "Provides-Extra: device" in text and "Provides-Extra: central" in text


@pytest.mark.slow
def test_installed_wheel_imports_everything_and_runs_the_demo(wheel, tmp_path):
    """Installed with its device, sim and central extras into a fresh virtualenv (pip's cache makes
    the second time fast), outside the repository: every module imports and `edged demo
    --fast` walks the door and verifies its journal."""
    require_pcscd()
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    py = venv / "bin" / "python"
    run(py, "-m", "pip", "install", "-q", f"{wheel}[device,sim,central]")
    probe = "\n".join(
        [
            "import importlib, pkgutil, edged",
            "names = [m.name for m in pkgutil.walk_packages(edged.__path__, 'edged.')]",
            "for n in names: importlib.import_module(n)",
            "assert 'edged.core.machine' in names and 'edged.drivers.pcsc' in names",
            f"assert edged.__file__.startswith({str(venv)!r}), edged.__file__",
            "print(len(names))",
        ]
    )
    p = run(py, "-c", probe, cwd=tmp_path)
    assert int(p.stdout.strip()) > 40
    demo = run(
        venv / "bin" / "edged",
        "demo",
        "--fast",
        "--state-dir",
        tmp_path / "d",
        cwd=tmp_path,
        timeout=600,
    )
    assert "OK:" in demo.stdout, demo.stdout[-2000:]
    # R5: a working-hours window stays shut on the site's closed day.
    assert "reason=holiday" in demo.stdout and "closed_day=創立記念日" in demo.stdout
