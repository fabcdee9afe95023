"""The session's side of the "being watched" indicator (:mod:`agent.indicator`, its own process).

:class:`IndicatorProcess` starts ``python -m agent.indicator`` when the agent's own record first
grants ``screen:view`` or ``input:control``, sends it who is watching and what is granted, and
stops it when neither is granted any more. What the window reports comes back here: its place
and focus go to the :class:`agent.input.consent_guard.ConsentGuard` (so remote input cannot press
its buttons), and its two buttons call ``on_withdraw_control`` and ``on_end``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from protocol.messages import Viewer
from wire.tasks import stop_task

from .input.consent_guard import ConsentGuard, Rect

__all__ = ["GUARD_NAME", "IndicatorProcess"]

log = logging.getLogger("agent.indicator")

GUARD_NAME: Final = "indicator"
MAX_LINE: Final = 64 * 1024
"""Longest line read from the indicator process."""


class IndicatorProcess:
    def __init__(
        self,
        guard: ConsentGuard,
        *,
        lang: str,
        on_withdraw_control: Callable[[], Awaitable[None]],
        on_end: Callable[[], Awaitable[None]],
        python: str = sys.executable,
    ) -> None:
        self.guard = guard
        self.lang = lang
        self.on_withdraw_control = on_withdraw_control
        self.on_end = on_end
        self.python = python
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.shown = asyncio.Event()
        self.unavailable = False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def show(self, *, viewers: Iterable[Viewer], granted: Iterable[str], notice: str = "") -> None:
        """Start the window if needed and show this state."""
        if self.unavailable:
            return
        if not self.running:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    self.python,
                    "-m",
                    "agent.indicator",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=MAX_LINE,
                )
            except OSError as exc:
                log.warning("cannot start the indicator window: %s", type(exc).__name__)
                self.unavailable = True
                return
            self._reader = asyncio.create_task(self._read(self._proc))
        state: dict[str, Any] = {
            "lang": self.lang,
            "viewers": [{"name": v.name, "role": v.role, "read_only": v.read_only} for v in viewers],
            "granted": sorted(granted),
        }
        if notice:
            state["notice"] = notice
        await self._send(state)

    async def _send(self, value: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            proc.stdin.write((json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8"))
            await proc.stdin.drain()

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        self.guard.protect(GUARD_NAME, None)
        self.shown.clear()
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                assert proc.stdin is not None
                proc.stdin.write(b'{"quit": true}\n')
                await proc.stdin.drain()
                proc.stdin.close()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            await stop_task(self._reader, what="indicator reader")

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                break
            if not line:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._on_event(event)
        self.guard.protect(GUARD_NAME, None)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind in ("shown", "moved"):
            rect = event.get("rect")
            if isinstance(rect, list) and len(rect) == 4 and all(isinstance(v, int) for v in rect):
                self.guard.protect(GUARD_NAME, Rect(*rect))  # wherever the window is now
                if kind == "shown":
                    # Places only (no screen content): lets a tester or an accessibility tool find it.
                    log.info("indicator shown at %s, buttons %s", rect, event.get("buttons"))
                    self.shown.set()
        elif kind == "focus":
            self.guard.focus(GUARD_NAME, bool(event.get("focused")))
        elif kind == "unavailable":
            self.unavailable = True
            log.warning("the indicator window is not available: %s", event.get("reason"))
        elif kind == "withdraw_control":
            self._spawn(self.on_withdraw_control())
        elif kind == "end":
            self._spawn(self.on_end())

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
