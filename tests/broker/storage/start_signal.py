"""The start of the worker processes of the storage tests (``appender``, ``guard_worker``): each
says ``ready`` and waits until the file ``GO`` exists, so that every worker starts at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path


async def ready_then_wait_for(go: Path, *, timeout: float = 30.0) -> None:
    """Print ``ready``; return once ``go`` exists, or exit after ``timeout`` seconds (a hang guard)."""
    print("ready", flush=True)
    deadline = time.monotonic() + timeout
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no go signal within {timeout:g} s")
        await asyncio.sleep(0.01)
