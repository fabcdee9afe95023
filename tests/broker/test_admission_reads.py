"""Admission reads gathered under load (``broker.admission_reads``), on SQLite and PostgreSQL: the
same answers as one read each, far fewer statements when many arrive together, a failure reported
to each admission, and a lost connection's admission leaving the others alone."""

from __future__ import annotations

import asyncio

import pytest

from broker.admission_reads import AdmissionReads
from broker.storage import Storage, open_storage
from broker.store import CertificateRecord, Subscriber
from tests.broker.storage import conftest as backends
from tests.broker.storage.test_contract_records import enrolled

# the storage tests' fixtures: every test here runs on SQLite and on PostgreSQL
postgres_database = backends.postgres_database
storage_url = backends.storage_url
storage = backends.storage


async def _fleet(storage: Storage, n: int) -> list[str]:
    serials = [f"{i:04x}" for i in range(n)]
    for i, serial in enumerate(serials):
        await enrolled(storage, f"C-{i % 7}", serial)
    return serials


async def _read_apart(storage: Storage, serial: str) -> tuple[CertificateRecord, Subscriber | None]:
    """The certificate and its contract by the two plain reads the gathered one must agree with."""
    record = await storage.certificates.get(serial)
    assert record is not None
    return record, await storage.subscribers.get(record.contract_id)


async def test_a_quiet_broker_reads_each_admission_at_once(storage: Storage) -> None:
    (serial,) = await _fleet(storage, 1)
    reads = AdmissionReads(storage.certificates.with_subscribers)
    found = await reads.get(serial)
    assert found is not None
    assert found == await _read_apart(storage, serial)
    assert await reads.get("not-enrolled") is None
    assert reads.reads == 2


async def test_admissions_that_arrive_together_share_a_few_statements(storage: Storage) -> None:
    serials = await _fleet(storage, 60)
    reads = AdmissionReads(storage.certificates.with_subscribers, max_in_flight=2, max_batch=25)
    asked = [*serials, *serials[:10], "unknown-1", "unknown-2"]  # a reconnect while the first waits
    answers = await asyncio.gather(*(reads.get(serial) for serial in asked))
    for serial, found in zip(asked, answers, strict=True):
        if serial.startswith("unknown"):
            assert found is None
        else:
            assert found is not None
            assert found == await _read_apart(storage, serial)
    # 2 started at once, then every waiting admission in batches of at most 25
    assert reads.reads <= 2 + -(-(len(set(asked)) - 2) // 25)
    assert reads.in_flight == 0


async def test_a_database_failure_is_each_admission_s_to_report(storage_url: str) -> None:
    closed = await open_storage(storage_url)
    serials = await _fleet(closed, 5)
    await closed.close()  # the database is gone for every read from now on
    try:  # what one admission's own read raises now
        await closed.certificates.with_subscriber(serials[0])
    except Exception as exc:
        expected = type(exc)
    else:
        pytest.fail("a closed storage answered")
    reads = AdmissionReads(closed.certificates.with_subscribers, max_in_flight=1)
    outcomes = await asyncio.gather(*(reads.get(s) for s in serials), return_exceptions=True)
    assert [type(o) for o in outcomes] == [expected] * len(serials), outcomes


async def test_a_lost_connection_s_admission_leaves_the_others_alone(storage: Storage) -> None:
    serials = await _fleet(storage, 3)
    reads = AdmissionReads(storage.certificates.with_subscribers, max_in_flight=1)
    first = asyncio.create_task(reads.get(serials[0]))
    lost = asyncio.create_task(reads.get(serials[1]))  # waits for the next read
    third = asyncio.create_task(reads.get(serials[2]))
    await asyncio.sleep(0)
    lost.cancel()  # its agent hung up (HeldLink.connection_lost)
    assert (await first) is not None
    with pytest.raises(asyncio.CancelledError):
        await lost
    found = await third
    assert found is not None
    assert found[0].serial == serials[2]


def test_limits_are_at_least_one() -> None:
    async def nothing(serials: object) -> dict[str, object]:
        return {}

    with pytest.raises(ValueError, match="at least 1"):
        AdmissionReads(nothing, max_in_flight=0)  # type: ignore[arg-type]
