"""Messages of one operator link are handled in order, even when one of them waits for a thread."""

from __future__ import annotations

import asyncio

import pytest

from broker.ordered import BacklogFull, OrderedDispatch


class Recorder:
    def __init__(self) -> None:
        self.handled: list[str] = []
        self.crashed = False
        self.release = asyncio.Event()

    def fast(self, message: str) -> None:
        self.handled.append(message)

    async def slow(self, message: str) -> None:
        await self.release.wait()
        if message == "boom":
            raise RuntimeError("slow step failed")
        self.handled.append(message)

    def crash(self) -> None:
        self.crashed = True

    def dispatch(self, max_backlog: int = 64) -> OrderedDispatch[str]:
        return OrderedDispatch(
            self.fast,
            self.slow,
            lambda m: m.startswith(("login", "boom")),
            on_crash=self.crash,
            max_backlog=max_backlog,
        )


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_fast_messages_are_handled_at_once() -> None:
    r = Recorder()
    d = r.dispatch()
    d.push("input 1")
    d.push("input 2")
    assert r.handled == ["input 1", "input 2"]  # in the same call, no task
    assert not d.busy


async def test_messages_behind_a_slow_one_wait_for_it_in_order() -> None:
    r = Recorder()
    d = r.dispatch()
    d.push("login")
    d.push("claim")
    d.push("input")
    await _settle()
    assert r.handled == []
    r.release.set()
    await _settle()
    assert r.handled == ["login", "claim", "input"]
    assert not d.busy


async def test_a_flood_during_a_slow_step_is_refused() -> None:
    r = Recorder()
    d = r.dispatch(max_backlog=2)
    d.push("login")
    d.push("a")
    d.push("b")
    with pytest.raises(BacklogFull):
        d.push("c")


async def test_a_failing_slow_step_reports_a_crash_and_drops_the_rest() -> None:
    r = Recorder()
    d = r.dispatch()
    d.push("boom")
    d.push("after")
    r.release.set()
    await _settle()
    assert r.crashed
    assert r.handled == []
    d.push("later")  # the link is being closed: nothing more is handled
    assert r.handled == []


async def test_closing_cancels_the_slow_step_and_forgets_the_backlog() -> None:
    r = Recorder()
    d = r.dispatch()
    d.push("login")
    d.push("claim")
    d.close()
    r.release.set()
    await _settle()
    assert r.handled == []
    assert not r.crashed
