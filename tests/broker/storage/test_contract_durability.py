"""Contract: which writes wait for the disk (docs/hardening.md, "Durability").

Everything that someone is told is done, and **every audit entry**, is a durable commit: the signed
checkpoints outside the database (``broker.checkpoints``) may sign an entry as soon as it is visible,
so an entry a power cut could undo would later read as a cut chain. Only the presence rows that the
next heartbeat or connection rewrites anyway (last seen, a node's agents marked offline, a machine
name) skip the wait. The services run on the real backends; the database is only watched.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from broker.storage import Storage, Tx
from broker.store import PresenceChange
from tests.broker.storage.test_contract_records import T0, enrolled


class Watched:
    """The storage's database, with the durability each write transaction asked for noted."""

    def __init__(self, storage: Storage) -> None:
        self._db = storage.db
        self.levels: list[bool] = []

    def write(self, *, durable: bool = True) -> AbstractAsyncContextManager[Tx]:
        self.levels.append(durable)
        return self._db.write(durable=durable)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


async def test_audited_and_acknowledged_writes_are_durable_and_only_rewritable_presence_is_not(
    storage: Storage,
) -> None:
    await enrolled(storage, "C-1", "aa")
    watched = Watched(storage)
    over = Storage.over(watched)  # the same database, watched

    async def level(write: Any) -> list[bool]:
        watched.levels.clear()
        await write
        return list(watched.levels)

    change = PresenceChange(serial="aa", online=True, now=T0 + 2, peer="127.0.0.1", node="n1")
    durable = {
        "connect (agent.connect entry)": over.presence.set_online_many([change]),
        "audit entry": over.audit.append(actor="a", action="x", subject="C-1", details={}, now=T0 + 3),
        "revocation": over.certificates.revoke("aa", now=T0 + 4, actor="admin", reason="lost"),
        "subscriber": over.subscribers.add("C-2", now=T0 + 5, actor="admin"),
    }
    for what, write in durable.items():
        assert await level(write) == [True], what
    rewritten = {
        "last seen": over.presence.touch(["aa"], now=T0 + 6),
        "machine name": over.presence.update_machine_name("aa", "pc-renamed"),
        "node offline": over.presence.mark_node_offline("n1", now=T0 + 7),
    }
    for what, write in rewritten.items():
        assert await level(write) == [False], what
    entries = await storage.audit.entries(subject="C-1")
    assert [e.action for e in entries][-3:] == ["agent.connect", "x", "cert.revoke"]
