"""py-spy profiles of the broker during a section, summarised as self and inclusive shares."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT
from bench.processes import Context


def start_profile(pid: int, ctx: Context, name: str, *, seconds: float) -> subprocess.Popen[bytes] | None:
    proc = spawn_spy(pid, ctx.data_dir / f"profile-{name}.txt", seconds=seconds)
    if proc is None:
        ctx.profiles[name] = {"error": NO_SPY}
    return proc


NO_SPY = "py-spy not installed (pip install py-spy)"


def spawn_spy(pid: int, out: Path, *, seconds: float) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` of ``pid`` for ``seconds`` into ``out`` (collapsed stacks); None without py-spy."""
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not Path(spy).exists():
        return None
    return subprocess.Popen(
        [
            spy,
            "record",
            "--nonblocking",
            "--rate",
            "100",
            "--format",
            "raw",
            "-o",
            str(out),
            "-p",
            str(pid),
            "-d",
            str(math.ceil(seconds)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish_spy(proc: subprocess.Popen[bytes], out: Path, name: str) -> dict[str, Any]:
    """Stop ``proc`` (it writes what it has), summarise ``out`` and keep a copy in bench/results/."""
    proc.send_signal(2)  # SIGINT: py-spy writes what it has
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if not out.exists():
        return {"error": err.decode(errors="replace")[-500:]}
    keep = ROOT / "bench" / "results" / f"profile-{name}.txt"
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(out, keep)
    return summarize_profile(out.read_text())


def finish_profile(proc: subprocess.Popen[bytes] | None, ctx: Context, name: str) -> None:
    if proc is None:
        return
    ctx.profiles[name] = finish_spy(proc, ctx.data_dir / f"profile-{name}.txt", name)


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` → ``func (module.py)``."""
    if " (" not in frame:
        return frame
    func, where = frame.split(" (", 1)
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    shown = "/".join(parts[-2:]) if len(parts) >= 2 else file
    return f"{func} ({shown})"


def summarize_profile(text: str, top: int = 12) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    total = 0
    idle = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        if leaf.startswith(("select (", "poll (", "epoll")) or "selectors.py" in leaf:
            idle += count
        self_counts[leaf] = self_counts.get(leaf, 0) + count
        for f in set(frames):
            incl_counts[f] = incl_counts.get(f, 0) + count

    def ranked(counts: dict[str, int]) -> list[list[Any]]:
        rows = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [[name, round(100 * c / total, 1)] for name, c in rows]

    return {
        "samples": total,
        "idle_in_select_pct": round(100 * idle / total, 1) if total else 0.0,
        "self_pct": ranked(self_counts) if total else [],
        "inclusive_pct": ranked(incl_counts) if total else [],
    }
