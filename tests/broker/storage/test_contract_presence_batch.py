"""Contract: presence changes written in one batch (a reconnect storm), the same on SQLite and
PostgreSQL: the rows end as the last change of each agent says, every change has its audit entry in
order, and the chain verifies, also when the batch starts on a damaged head."""

from __future__ import annotations

from broker.storage import Storage
from broker.store import PresenceChange

from .test_contract_records import T0, enrolled


def change(serial: str, online: bool, at: float, node: str = "n2") -> PresenceChange:
    return PresenceChange(serial=serial, online=online, now=at, peer="192.0.2.7", node=node)


async def test_a_batch_writes_every_change_in_order_with_its_audit_entry(storage: Storage) -> None:
    await enrolled(storage, "C-1", "0a01")
    await enrolled(storage, "C-2", "0a02")
    batch = [
        change("0a01", True, T0 + 10),
        change("0a02", True, T0 + 11),
        change("0a01", False, T0 + 12),  # the same agent twice: the last change wins
        change("0a01", True, T0 + 13, node="n3"),
    ]
    await storage.presence.set_online_many(batch)

    agents = {a.serial: a for a in await storage.presence.list_agents()}
    assert agents["0a01"].online is True
    assert agents["0a01"].last_seen == T0 + 13
    assert agents["0a02"].online is True
    assert await storage.presence.holder("0a01") == "n3"
    entries = [e for e in await storage.audit.entries() if e.action.startswith("agent.") and e.at > T0 + 5]
    assert [(e.action, e.subject, e.details["serial"]) for e in entries] == [
        ("agent.connect", "C-1", "0a01"),
        ("agent.connect", "C-2", "0a02"),
        ("agent.disconnect", "C-1", "0a01"),
        ("agent.connect", "C-1", "0a01"),
    ]
    assert [e.seq for e in entries] == list(range(entries[0].seq, entries[0].seq + 4))
    assert (await storage.audit.verify()).ok
    await storage.presence.set_online_many([])  # nothing to write: no transaction, no entry
    assert len(await storage.audit.entries()) == entries[-1].seq


async def test_a_batch_on_a_damaged_head_records_the_break_first(storage: Storage) -> None:
    await enrolled(storage, "C-1", "0a01")
    await storage.meta.set("audit_head", '[1, "not the head"]')  # an edited head
    await storage.presence.set_online_many([change("0a01", True, T0 + 10), change("0a01", False, T0 + 11)])
    entries = await storage.audit.entries()
    assert [e.action for e in entries][-3:] == ["audit.break", "agent.connect", "agent.disconnect"]
    report = await storage.audit.verify()
    # The break stays visible to every verification; the batch itself chains correctly after it.
    assert report.problems == [
        f"entry {entries[-3].seq}: the broker found the chain damaged: the recorded "
        "head is malformed (not [seq, 64 hex digits] with 0 <= seq <= 2**53)"
    ]
