"""Shared pieces of the benchmark harness: processes, machine facts, statistics.

Every child process prints JSON lines on stdout (one object per line); the orchestrator reads
them in a thread per child and keeps the last ones, so a pipe never fills up.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
KiB = 1024
MiB = 1024 * 1024


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import ssl
    from importlib.metadata import version

    return {
        "cpu_model": model,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "websockets": version("websockets"),
        "openssl": ssl.OPENSSL_VERSION,
        "platform": platform.platform(),
        "nofile_hard_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def emit(obj: dict[str, Any]) -> None:
    """One JSON line to the orchestrator."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("BROKER_CA_PASSPHRASE", None)
    return env


class Child:
    """A child process speaking JSON lines; commands go to its stdin, one JSON object per line."""

    def __init__(self, args: Sequence[str], *, name: str) -> None:
        self.name = name
        self.args = list(args)
        self.proc: subprocess.Popen[str] = subprocess.Popen(
            [PYTHON, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        self.messages: list[dict[str, Any]] = []
        self.text: list[str] = []
        self.errors: list[str] = []
        self._cond = threading.Condition()
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout, False), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, True), daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _pump(self, stream: IO[str], is_err: bool) -> None:
        for line in stream:
            line = line.rstrip("\n")
            with self._cond:
                if is_err:
                    self.errors.append(line)
                    del self.errors[:-200]
                elif line.startswith("{"):
                    try:
                        self.messages.append(json.loads(line))
                    except json.JSONDecodeError:
                        self.text.append(line)
                else:
                    self.text.append(line)
                self._cond.notify_all()

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def last(self, kind: str) -> dict[str, Any] | None:
        with self._cond:
            for m in reversed(self.messages):
                if m.get("event") == kind:
                    found: dict[str, Any] = m
                    return found
        return None

    def wait_for(self, kind: str, *, timeout: float, after: int = 0) -> dict[str, Any]:
        """The first message of ``kind`` at index >= ``after``; raises on timeout or early exit."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages[after:]:
                    if m.get("event") == kind:
                        return m
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n" + self.stderr_tail())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: no {kind!r} in {timeout} s:\n" + self.stderr_tail())
                self._cond.wait(min(left, 0.5))

    def wait_text(self, needle: str, *, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.text:
                    if needle in line:
                        return line
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n" + self.stderr_tail())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: no {needle!r} in {timeout} s:\n" + self.stderr_tail())
                self._cond.wait(min(left, 0.5))

    def mark(self) -> int:
        with self._cond:
            return len(self.messages)

    def stderr_tail(self, n: int = 30) -> str:
        with self._cond:
            return "\n".join(self.errors[-n:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for stream in (self.proc.stdin,):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()


class Usage:
    """CPU seconds and RSS of one process, sampled from outside (psutil)."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self._t0 = time.monotonic()
        self._cpu0 = self._cpu()

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return float(t.user + t.system)

    def rss(self) -> int:
        return int(self.proc.memory_info().rss)

    def restart(self) -> None:
        self._t0 = time.monotonic()
        self._cpu0 = self._cpu()

    def cpu_fraction(self) -> float:
        """CPU seconds per wall second since the last restart (1.0 = one core busy)."""
        wall = time.monotonic() - self._t0
        return (self._cpu() - self._cpu0) / wall if wall > 0 else 0.0


def sleep_until(deadline: float) -> None:
    left = deadline - time.monotonic()
    if left > 0:
        time.sleep(left)
