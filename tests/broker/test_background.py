"""The background writer on a real SQLite file: presence changes that queue up behind a write are
written in batches (one transaction each), in order, each with its audit entry; one change the
database refuses costs only itself; the bound counts records, not batches."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from broker.background import BackgroundWriter
from broker.storage import Storage
from broker.store import PresenceChange
from tests.broker.storage.test_contract_records import T0, enrolled


def change(serial: str, online: bool, at: float) -> PresenceChange:
    return PresenceChange(serial=serial, online=online, now=at, peer="192.0.2.7", node="n1")


class Blocked:
    """A write that holds the writer until ``release``; what queues behind it waits."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def __call__(self, storage: Storage) -> None:
        await self.gate.wait()


def counting() -> tuple[list[int], object]:
    writes: list[int] = []

    @contextmanager
    def timed() -> Iterator[None]:
        writes.append(1)
        yield

    return writes, timed


async def test_changes_queued_behind_a_write_go_in_batches_in_order(storage: Storage) -> None:
    serials = [f"{i:04x}" for i in range(1, 31)]
    for i, serial in enumerate(serials):
        await enrolled(storage, f"C-{i}", serial)
    before = len(await storage.audit.entries())
    writes, timed = counting()
    writer = BackgroundWriter(storage, max_batch=16, timed=timed)  # type: ignore[arg-type]
    writer.start()
    blocked = Blocked()
    writer.submit(blocked, "blocked")
    await asyncio.sleep(0.05)  # the writer is inside the blocked write now
    for n in range(40):  # 40 changes: 30 connects, then 10 of them leave again
        serial = serials[n % 30]
        writer.submit_presence(change(serial, n < 30, T0 + 100 + n))
    blocked.gate.set()
    assert await writer.wait_idle(30)
    await writer.close(5)

    assert len(writes) == 1 + 3  # the blocked write, then 16 + 16 + 8 changes
    entries = (await storage.audit.entries())[before:]
    assert [(e.action, e.details["serial"]) for e in entries] == [
        ("agent.connect" if n < 30 else "agent.disconnect", serials[n % 30]) for n in range(40)
    ]
    assert (await storage.audit.verify()).ok
    online = {a.serial: a.online for a in await storage.presence.list_agents()}
    assert sum(online.values()) == 20


async def test_a_change_the_database_refuses_costs_only_itself(storage: Storage) -> None:
    await enrolled(storage, "C-1", "0a01")
    await enrolled(storage, "C-2", "0a02")
    writer = BackgroundWriter(storage)
    writer.start()
    blocked = Blocked()
    writer.submit(blocked, "blocked")
    await asyncio.sleep(0.05)
    writer.submit_presence(change("0a01", True, T0 + 10))
    writer.submit_presence(change("ffff", True, T0 + 11))  # no such certificate (foreign key)
    writer.submit_presence(change("0a02", True, T0 + 12))
    blocked.gate.set()
    assert await writer.wait_idle(30)
    await writer.close(5)
    written = [e.details["serial"] for e in await storage.audit.entries() if e.action == "agent.connect"]
    assert written == ["0a01", "0a02"]
    assert (await storage.audit.verify()).ok


async def test_the_bound_counts_records_not_batches(storage: Storage) -> None:
    await enrolled(storage, "C-1", "0a01")
    writer = BackgroundWriter(storage, max_pending=10)
    writer.start()
    blocked = Blocked()
    writer.submit(blocked, "blocked")  # one record
    await asyncio.sleep(0.05)
    for n in range(20):
        writer.submit_presence(change("0a01", n % 2 == 0, T0 + 10 + n))
    assert writer.dropped == 11  # 1 + 9 queued: the 11 after them are dropped and counted
    blocked.gate.set()
    assert await writer.wait_idle(30)
    await writer.close(5)
    presence = ("agent.connect", "agent.disconnect")
    assert len([e for e in await storage.audit.entries() if e.action in presence]) == 9
