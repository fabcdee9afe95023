"""``--profile`` of ``bench.cluster_idle``: py-spy on one broker process during a phase.

Where a broker's CPU goes is the question a figure alone does not answer (docs/PERFORMANCE.md: the
idle CPU and the storm at 100,000 agents). With ``--profile``, the idle window is recorded on the
broker holding the most agents and the storm's first seconds on the surviving broker with the
most; each summary (self and inclusive shares, ``bench.profiling``) goes into the result and the
collapsed stacks into ``bench/results/profile-<name>.txt``.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.profiling import NO_SPY, finish_spy, spawn_spy


class Spy:
    """At most one recording at a time; does nothing when not ``enabled``."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._dir = Path(tempfile.mkdtemp(prefix="bench-spy-")) if enabled else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._name = ""
        self.pid = 0

    def start(self, pid: int, name: str, *, seconds: float) -> None:
        if self._dir is None:
            return
        self._name, self.pid = name, pid
        self._proc = spawn_spy(pid, self._dir / f"{name}.txt", seconds=seconds)

    def finish(self) -> dict[str, Any] | None:
        """The summary of the recording started last (None when not profiling)."""
        if self._dir is None:
            return None
        if self._proc is None:
            return {"error": NO_SPY}
        proc, self._proc = self._proc, None
        return {"pid": self.pid, **finish_spy(proc, self._dir / f"{self._name}.txt", self._name)}
