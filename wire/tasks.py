"""Stopping an asyncio task without losing a cancellation, and without waiting forever.

A broker's shutdown hung in CI (tests/e2e/test_heartbeat.py, only with the CPU busy) because of two
habits that lose a cancellation on Python 3.11:

- ``asyncio.wait_for(inner, t)`` returns ``inner``'s result when the cancellation arrives in the
  same loop iteration as ``inner`` finishes, and the ``CancelledError`` is gone (CPython gh-86296,
  fixed only in 3.12, where ``wait_for`` is built on ``asyncio.timeout``). The readiness probe's loop
  (``wait_for`` around ``SELECT 1``) so went on to its next sleep after ``cancel()``.
- ``with suppress(CancelledError): await task`` swallows the *caller's* cancellation too, so the
  owner that awaited the loop waited for it forever, and nothing above it could cancel the wait.

So product code bounds an await with ``asyncio.timeout`` (ruff bans ``asyncio.wait_for``:
``[tool.ruff.lint.flake8-tidy-imports.banned-api]`` in pyproject.toml) and stops a task with
:func:`stop_task` (tests/test_async_rules.py rejects a suppressed ``CancelledError``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("wire.tasks")

STOP_TIMEOUT = 10.0
"""Seconds a cancelled task may take to end before its owner gives up on it and goes on."""


async def stop_task(
    task: asyncio.Future[Any] | None,
    *,
    grace: float = 0.0,
    timeout: float = STOP_TIMEOUT,
    what: str = "task",
) -> bool:
    """Let ``task`` end by itself for ``grace`` seconds, then cancel it and wait ``timeout`` more.

    True when it has ended. A task that outlives the bound (it ignored its cancellation) is logged
    and left behind: a shutdown goes on instead of waiting forever. An exception the task ended with
    is logged (its type only: a message may hold a peer's data), not raised. The caller's own
    cancellation always propagates.
    """
    if task is None:
        return True
    if grace > 0 and not task.done():
        await asyncio.wait({task}, timeout=grace)
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=timeout)
        if not task.done():
            log.error("%s did not stop within %g s of being cancelled; going on without it", what, timeout)
            return False
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.info("%s had ended with %s", what, type(exc).__name__)
    return True
