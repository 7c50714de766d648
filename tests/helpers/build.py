"""Building install artifacts from the tree in the tests: a command that must succeed,
and a clean copy of the tree (no build/, no venv, no caches: setuptools would ship what
build/lib still holds)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent.parent


def run(*cmd: str | Path, **kw: Any) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"{cmd}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def tree_copy(dst: Path) -> Path:
    shutil.copytree(
        ROOT,
        dst,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "demo-state"
        ),
    )
    return dst
