"""``--profile`` of ``bench.cluster_idle``: py-spy on one broker process during a phase.

Where a broker's CPU goes is the question a figure alone does not answer (docs/PERFORMANCE.md: the
idle CPU and the storm at 100,000 agents). With ``--profile``, the idle window is recorded on the
broker holding the most agents and the storm's first seconds on the surviving broker with the
most; each summary (self and inclusive shares, ``bench.profiling``) goes into the result and the
collapsed stacks into ``bench/results/profile-<name>.txt``.

With ``--profile native`` the same windows are recorded by ``perf record -e cpu-clock -g`` instead
(C-level: the interpreter, the garbage collector, OpenSSL, malloc and the kernel, which py-spy's
Python stacks cannot separate without pausing the process); the summary is perf's self time by
library and symbol, and the report goes to ``bench/results/perf-<name>.txt``.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.profiling import NO_SPY, finish_spy, spawn_spy

NO_PERF = "perf not installed (Debian: linux-perf)"
PERF_TOP = 40
"""Lines of perf's report (self time by library and symbol) kept in the result."""


class Spy:
    """At most one recording at a time; does nothing when not ``enabled``."""

    def __init__(self, enabled: bool | str | None) -> None:
        self.native = enabled == "native"
        self.enabled = bool(enabled)
        self._dir = Path(tempfile.mkdtemp(prefix="bench-spy-")) if enabled else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._name = ""
        self.pid = 0

    def start(self, pid: int, name: str, *, seconds: float) -> None:
        if self._dir is None:
            return
        self._name, self.pid = name, pid
        if self.native:
            self._proc = _spawn_perf(pid, self._dir / f"{name}.perf", seconds=seconds)
        else:
            self._proc = spawn_spy(pid, self._dir / f"{name}.txt", seconds=seconds)

    def finish(self) -> dict[str, Any] | None:
        """The summary of the recording started last (None when not profiling)."""
        if self._dir is None:
            return None
        if self._proc is None:
            return {"error": NO_PERF if self.native else NO_SPY}
        proc, self._proc = self._proc, None
        if self.native:
            return {"pid": self.pid, **_finish_perf(proc, self._dir / f"{self._name}.perf", self._name)}
        return {"pid": self.pid, **finish_spy(proc, self._dir / f"{self._name}.txt", self._name)}


def _spawn_perf(pid: int, out: Path, *, seconds: float) -> subprocess.Popen[bytes] | None:
    perf = shutil.which("perf")
    if perf is None:
        return None
    return subprocess.Popen(
        [
            *(perf, "record", "-q", "-e", "cpu-clock", "-F", "499", "-g", "-p", str(pid), "-o", str(out)),
            *("--", "sleep", str(math.ceil(seconds))),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finish_perf(proc: subprocess.Popen[bytes], out: Path, name: str) -> dict[str, Any]:
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if not out.exists():
        return {"error": err.decode(errors="replace")[-500:]}
    report = subprocess.run(
        ["perf", "report", "-i", str(out), "--stdio", "--no-children", "--sort", "dso,sym", "-g", "none"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    ).stdout
    keep = ROOT / "bench" / "results" / f"perf-{name}.txt"
    keep.parent.mkdir(parents=True, exist_ok=True)
    keep.write_text(report)
    rows = [line.strip() for line in report.splitlines() if line.strip() and not line.startswith("#")]
    return {"perf_self": rows[:PERF_TOP], "report": str(keep.relative_to(ROOT))}
