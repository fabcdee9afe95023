"""Contract: the revocation watch reads the revoked certificates through an index of its own.

Every broker process re-reads the revoked serials every few seconds (the CRL and the cut of a revoked
agent). Without an index that read scanned and sorted every certificate ever issued: with 100,000
enrolled PCs it was most of an idle broker's CPU (docs/PERFORMANCE.md, the cluster idle bench).
Migration 5 adds a partial index holding only revoked certificates.
"""

from __future__ import annotations

from broker.storage import Storage
from tests.broker.storage.test_contract_records import T0, enrolled

QUERY = "SELECT serial, revoked_at FROM certificates WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial"


async def test_the_revoked_serials_come_from_the_partial_index(storage: Storage) -> None:
    for i in range(40):
        await enrolled(storage, f"C-{i % 4}", f"{i:04x}", at=T0 + i)
    assert await storage.certificates.revoke("0007", now=T0 + 100, actor="admin", reason="lost")
    assert await storage.certificates.revoke("0003", now=T0 + 101, actor="admin", reason="stolen")
    assert await storage.certificates.revoked_serials() == [("0007", T0 + 100), ("0003", T0 + 101)]

    async with storage.db.read() as tx:
        if storage.db.dialect == "sqlite":
            plan = " ".join(str(row[-1]) for row in await tx.fetchall("EXPLAIN QUERY PLAN " + QUERY))
            assert "certificates_revoked" in plan, plan  # no "SCAN certificates", no temporary B-tree
            assert "TEMP B-TREE" not in plan, plan
        else:  # a planner picks a sequential scan on a tiny table; the index must exist and be partial
            rows = await tx.fetchall(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'certificates'"
                " AND indexname = 'certificates_revoked' AND schemaname = current_schema()"
            )
            assert len(rows) == 1
            assert "WHERE (revoked_at IS NOT NULL)" in str(rows[0][0])
