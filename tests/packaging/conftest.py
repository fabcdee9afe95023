"""Built packages shared by the packaging tests: one wheel + sdist and one fresh venv per session.

The sources are copied first (only what ``git`` would track: no .venv, caches or build output), so
building never writes into the worktree. The venv is made with ``python -m venv`` and gets the wheel
from ``pip`` as configured on this machine (its cache, local index, or PyPI); nothing from the
worktree is on its ``sys.path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 600.0
"""Seconds allowed for one build or one pip install (a cold pip cache downloads ~60 MB)."""

_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache", ".pytest_cache",
    "build", "dist", "*.egg-info", "screenshots", "results",
)  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of an installed program: no PYTHONPATH, no active venv, unbuffered."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run(*cmd: str | Path, cwd: Path, timeout: float = BUILD_TIMEOUT, **kw: object) -> str:
    result = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        check=False,
        **kw,  # type: ignore[call-overload]
    )
    if result.returncode != 0:
        command = " ".join(map(str, cmd))
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return str(result.stdout)


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path
    source: Path


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """``python -m build`` on a copy of the sources: the sdist, then the wheel built from it."""
    work = tmp_path_factory.mktemp("build")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=_IGNORE, symlinks=False)
    dist = work / "dist"
    run(sys.executable, "-m", "build", "--outdir", dist, source, cwd=work)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    return Built(wheel=wheel, sdist=sdist, source=source)


@dataclass(frozen=True)
class Venv:
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / ("Scripts" if sys.platform == "win32" else "bin")

    @property
    def python(self) -> Path:
        return self.bin / "python"


def make_venv(path: Path) -> Venv:
    run(sys.executable, "-m", "venv", path, cwd=path.parent)
    return Venv(path)


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return make_venv(tmp_path_factory.mktemp("venv") / "venv")
