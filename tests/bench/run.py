"""One way for the bench smoke tests to run a bench the way a user does: ``python -m <module> …`` in a
child process from the checkout, which must exit 0."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.helpers import PYTHON, ROOT, child_env


def run_bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m *args``; fails the test (with the end of its stderr) unless it exits 0."""
    result = subprocess.run(
        [PYTHON, "-m", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def last_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON line a bench prints last."""
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data
