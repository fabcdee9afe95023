"""Contract: every operation's round trip, the same on SQLite and PostgreSQL (fixture ``storage``)."""

from __future__ import annotations

import pytest

from broker.errors import AlreadyExists, NotFound, RefusedError
from broker.storage import Storage
from broker.store import AgentPresence, CertificateRecord, SubscriberStatus
from protocol.errors import ErrorCode

T0 = 1_750_000_000.25  # a time with a fraction: REAL / DOUBLE PRECISION must keep it exactly


def cert(serial: str, contract: str = "C-1", *, at: float = T0) -> CertificateRecord:
    return CertificateRecord(
        serial=serial,
        contract_id=contract,
        machine_name=f"pc-{serial}",
        cert_pem="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        issued_at=at,
        not_after=at + 86_400 * 365,
    )


async def enrolled(storage: Storage, contract: str, serial: str, *, at: float = T0) -> None:
    if await storage.subscribers.get(contract) is None:
        await storage.subscribers.add(contract, now=at, actor="admin")
    await storage.subscribers.add_enrollment_token(
        contract, f"tok-{serial}", now=at, expires_at=at + 600, actor="admin"
    )
    await storage.subscribers.complete_enrollment(f"tok-{serial}", cert(serial, contract, at=at), now=at + 1)


async def test_subscribers(storage: Storage) -> None:
    added = await storage.subscribers.add("C-2", now=T0, actor="admin")
    await storage.subscribers.add("C-1", now=T0 + 1, actor="admin")
    assert added.status is SubscriberStatus.ACTIVE
    assert await storage.subscribers.get("C-2") == added
    assert await storage.subscribers.get("nobody") is None
    assert [s.contract_id for s in await storage.subscribers.list_all()] == ["C-1", "C-2"]
    with pytest.raises(AlreadyExists, match="第7条"):
        await storage.subscribers.add("C-2", now=T0 + 2, actor="admin")

    await storage.subscribers.set_status(
        "C-2", SubscriberStatus.SUSPENDED, now=T0 + 3, actor="admin", until=T0 + 100, reason="unpaid"
    )
    suspended = await storage.subscribers.get("C-2")
    assert suspended is not None
    assert (suspended.status, suspended.status_changed_at, suspended.suspended_until) == (
        SubscriberStatus.SUSPENDED,
        T0 + 3,
        T0 + 100,
    )
    await storage.subscribers.set_status("C-2", SubscriberStatus.ACTIVE, now=T0 + 4, actor="admin")
    resumed = await storage.subscribers.get("C-2")
    assert resumed is not None
    assert resumed.suspended_until is None
    with pytest.raises(NotFound):
        await storage.subscribers.set_status("nobody", SubscriberStatus.ACTIVE, now=T0, actor="admin")
    actions = [e.action for e in await storage.audit.entries(subject="C-2")]
    assert actions == ["subscriber.add", "subscriber.suspend", "subscriber.resume"]
    suspend = (await storage.audit.entries(subject="C-2"))[1]
    assert suspend.details == {"reason": "unpaid", "until": T0 + 100}


async def test_enrollment_and_certificates(storage: Storage) -> None:
    await storage.subscribers.add("C-1", now=T0, actor="admin")
    await storage.subscribers.add_enrollment_token("C-1", "h1", now=T0, expires_at=T0 + 600, actor="admin")
    token = await storage.subscribers.get_enrollment_token("h1")
    assert token is not None
    assert (token.contract_id, token.expires_at, token.used_at) == (
        "C-1",
        T0 + 600,
        None,
    )
    assert await storage.subscribers.get_enrollment_token("nope") is None

    record = cert("0a1b")
    await storage.subscribers.complete_enrollment("h1", record, now=T0 + 5)
    assert await storage.certificates.get("0a1b") == record
    # An agent's admission reads both in one statement: the same records as the two reads.
    assert await storage.certificates.with_subscriber("0a1b") == (
        record,
        await storage.subscribers.get("C-1"),
    )
    assert await storage.certificates.with_subscriber("ffff") is None
    used = await storage.subscribers.get_enrollment_token("h1")
    assert used is not None
    assert used.used_at == T0 + 5
    assert await storage.certificates.list_all("C-1") == [record]
    assert await storage.certificates.list_all() == [record]
    assert await storage.certificates.list_all("C-9") == []
    assert await storage.presence.list_agents() == [
        AgentPresence(
            serial="0a1b",
            contract_id="C-1",
            machine_name="pc-0a1b",
            online=False,
            last_seen=None,
            revoked=False,
        )
    ]

    assert await storage.certificates.revoke("0a1b", now=T0 + 9, actor="admin", reason="lost PC") is True
    assert await storage.certificates.revoke("0a1b", now=T0 + 10, actor="admin", reason="again") is False
    revoked = await storage.certificates.get("0a1b")
    assert revoked is not None
    assert (revoked.revoked_at, revoked.revoke_reason) == (T0 + 9, "lost PC")
    assert await storage.certificates.revoked_serials() == [("0a1b", T0 + 9)]
    with pytest.raises(NotFound):
        await storage.certificates.revoke("ffff", now=T0, actor="admin", reason="x")
    actions = [e.action for e in await storage.audit.entries(subject="C-1")]
    assert actions == ["subscriber.add", "token.issue", "agent.enroll", "cert.revoke"]


@pytest.mark.parametrize(
    ("token_hash", "contract", "now", "code"),
    [
        ("missing", "C-1", T0, ErrorCode.TOKEN_UNKNOWN),
        ("h1", "C-other", T0, ErrorCode.TOKEN_UNKNOWN),  # never tells whose token it is
        ("h1", "C-1", T0 + 600, ErrorCode.TOKEN_EXPIRED),
        ("used", "C-1", T0, ErrorCode.TOKEN_USED),
    ],
)
async def test_enrollment_refusals_change_nothing(
    storage: Storage, token_hash: str, contract: str, now: float, code: ErrorCode
) -> None:
    await storage.subscribers.add("C-1", now=T0, actor="admin")
    await storage.subscribers.add_enrollment_token("C-1", "h1", now=T0, expires_at=T0 + 600, actor="admin")
    await enrolled(storage, "C-1", "used0")
    await storage.subscribers.add_enrollment_token("C-1", "used", now=T0, expires_at=T0 + 600, actor="admin")
    await storage.subscribers.complete_enrollment("used", cert("used1"), now=T0)
    before = len(await storage.audit.entries())

    with pytest.raises(RefusedError) as refused:
        await storage.subscribers.complete_enrollment(token_hash, cert("beef", contract), now=now)
    assert refused.value.code is code
    assert await storage.certificates.get("beef") is None
    assert len(await storage.audit.entries()) == before


async def test_presence(storage: Storage) -> None:
    await enrolled(storage, "C-1", "aa")
    await enrolled(storage, "C-1", "bb")
    await storage.presence.set_online("aa", online=True, now=T0 + 10, peer="127.0.0.1", node="n1")
    await storage.presence.set_online("bb", online=True, now=T0 + 11, peer="127.0.0.2", node="n2")
    await storage.presence.touch(["aa", "bb"], now=T0 + 20)
    await storage.presence.touch([], now=T0 + 21)
    await storage.presence.update_machine_name("aa", "居間のPC")
    agents = {a.serial: a for a in await storage.presence.list_agents()}
    assert (agents["aa"].online, agents["aa"].last_seen, agents["aa"].machine_name) == (
        True,
        T0 + 20,
        "居間のPC",
    )
    assert await storage.presence.mark_node_offline("n1", now=T0 + 30) == 1
    agents = {a.serial: a for a in await storage.presence.list_agents()}
    assert (agents["aa"].online, agents["bb"].online) == (False, True)
    await storage.presence.set_online("bb", online=False, now=T0 + 31, peer="127.0.0.2", node="n2")
    connects = [e for e in await storage.audit.entries(subject="C-1") if e.action.startswith("agent.")]
    assert [(e.action, e.details) for e in connects][-3:] == [
        ("agent.connect", {"serial": "aa", "peer": "127.0.0.1"}),
        ("agent.connect", {"serial": "bb", "peer": "127.0.0.2"}),
        ("agent.disconnect", {"serial": "bb", "peer": "127.0.0.2"}),
    ]


async def test_inventory(storage: Storage) -> None:
    await enrolled(storage, "C-1", "aa")
    first = await storage.inventory.save(
        contract_id="C-1",
        serial="aa",
        session_id="s1",
        items=["os", "memory"],
        items_blob=b"\x00ciphertext\xff",
        credentials_blob=None,
        now=T0 + 1,
    )
    second = await storage.inventory.save(
        contract_id="C-1",
        serial="aa",
        session_id="s2",
        items=["router_login"],
        items_blob=b"\x01",
        credentials_blob=b"\x02secret-blob",
        now=T0 + 2,
    )
    assert second != first
    got = await storage.inventory.get(first)
    assert got is not None
    assert (got.items_blob, got.credentials_blob, got.session_id) == (
        b"\x00ciphertext\xff",
        None,
        "s1",
    )
    latest = await storage.inventory.latest("C-1")
    assert latest is not None
    assert (latest.id, latest.credentials_blob) == (second, b"\x02secret-blob")
    assert await storage.inventory.get(99_999) is None
    assert await storage.inventory.latest("C-2") is None
    received = (await storage.audit.entries(subject="s2"))[0]
    assert received.details == {
        "contract": "C-1",
        "inventory": second,
        "items": ["router_login"],
        "router_credentials": True,
    }

    # 第32条4: deleted only once the contract has been terminated longer than the retention
    assert await storage.inventory.purge(terminated_before=T0 + 1000, now=T0 + 1000, actor="cron") == []
    await storage.subscribers.set_status("C-1", SubscriberStatus.TERMINATED, now=T0 + 100, actor="admin")
    assert await storage.inventory.purge(terminated_before=T0 + 50, now=T0 + 1000, actor="cron") == []
    assert await storage.inventory.purge(terminated_before=T0 + 200, now=T0 + 1000, actor="cron") == ["C-1"]
    assert await storage.inventory.latest("C-1") is None
    purge = (await storage.audit.entries(subject="C-1"))[-1]
    assert (purge.action, purge.details) == ("inventory.purge", {"deleted": 2, "terminated_before": T0 + 200})


async def test_meta(storage: Storage) -> None:
    assert await storage.meta.get("public_url") is None
    await storage.meta.set("public_url", "wss://a")
    await storage.meta.set("public_url", "wss://b")
    assert await storage.meta.get("public_url") == "wss://b"


async def test_sessions_and_receipts(storage: Storage) -> None:
    await enrolled(storage, "C-1", "aa")
    await storage.sessions.opened("s1", contract_id="C-1", serial="aa", operator="alice", now=T0 + 1)
    receipt = await storage.sessions.record_receipt(
        session_id="s1",
        contract_id="C-1",
        serial="aa",
        decision="answered",
        granted=("screen:view",),
        denied=("input:control",),
        receipt="v1|s1|aa|answered|screen:view",
        signature="c2lnbmF0dXJl",
        now=T0 + 2,
    )
    assert await storage.sessions.receipts("s1") == [receipt]
    assert await storage.sessions.receipts("s2") == []
    audited = (await storage.audit.entries(subject="s1"))[0]
    assert (audited.seq, audited.action, audited.details["granted"]) == (
        receipt.audit_seq,
        "consent.receipt",
        ["screen:view"],
    )

    ended = await storage.sessions.ended(
        "s1",
        now=T0 + 60,
        by="operator",
        reason="done",
        bytes_to_agent=1234,
        bytes_to_operator=987_654_321_000,
    )
    assert ended is True
    again = await storage.sessions.ended(
        "s1", now=T0 + 61, by="operator", reason="x", bytes_to_agent=0, bytes_to_operator=0
    )
    assert again is False
    record = await storage.sessions.get("s1")
    assert record is not None
    assert (record.ended_at, record.bytes_to_agent, record.bytes_to_operator) == (
        T0 + 60,
        1234,
        987_654_321_000,
    )
    assert [r.id for r in await storage.sessions.for_contract("C-1")] == ["s1"]
    summary = (await storage.audit.entries(subject="s1"))[-1]
    assert summary.action == "session.end"
    assert (summary.details["bytes_to_agent"], summary.details["operator"]) == (1234, "alice")


async def test_operators(storage: Storage) -> None:
    added = await storage.operators.add(
        "alice",
        display_name="Alice 青木",
        role="supervisor",
        password_hash="$argon2id$v=19$m=65536,t=3,p=4$abc",
        totp_secret_blob=b"\x00\x01blob",
        now=T0,
        actor="admin",
    )
    assert added.password_change_required
    assert added.role == "supervisor"
    assert await storage.operators.get("alice") == added
    assert [o.name for o in await storage.operators.list_all()] == ["alice"]
    with pytest.raises(AlreadyExists):
        await storage.operators.add(
            "alice",
            display_name="x",
            role="operator",
            password_hash="h",
            totp_secret_blob=b"",
            now=T0,
            actor="a",
        )

    assert (
        await storage.operators.record_login_failure(
            "alice", now=T0 + 1, lock_after=2, lock_for=900, peer="p", reason="password"
        )
        is None
    )
    locked = await storage.operators.record_login_failure(
        "alice", now=T0 + 2, lock_after=2, lock_for=900, peer="p", reason="totp"
    )
    assert locked == T0 + 902
    record = await storage.operators.get("alice")
    assert record is not None
    assert (record.failed_logins, record.locked_until) == (0, T0 + 902)
    await storage.operators.unlock("alice", now=T0 + 3, actor="admin")

    ok = await storage.operators.record_login_success(
        "alice",
        now=T0 + 4,
        totp_step=1000,
        peer="p",
        token_hash="th1",
        expires_at=T0 + 100,
        password_hash="new",
    )
    assert ok is True
    replay = await storage.operators.record_login_success(
        "alice", now=T0 + 5, totp_step=1000, peer="p", token_hash="th2", expires_at=T0 + 100
    )
    assert replay is False  # RFC 6238 §5.2
    assert await storage.operators.get_token("th2") is None
    assert await storage.operators.get_token("th1") == ("alice", T0 + 100, None)
    by_token = await storage.operators.by_token("th1")
    assert by_token is not None
    assert (by_token[0].name, by_token[0].password_hash, by_token[0].last_totp_step) == ("alice", "new", 1000)
    assert await storage.operators.by_token("nope") is None

    await storage.operators.set_password(
        "alice", "h2", now=T0 + 6, change_required=False, actor="operator:alice"
    )
    record = await storage.operators.get("alice")
    assert record is not None
    assert (record.password_hash, record.password_change_required) == ("h2", False)
    await storage.operators.store_token("th3", "alice", now=T0 + 7, expires_at=T0 + 200)
    assert await storage.operators.revoke_token("th3", now=T0 + 8) is True
    assert await storage.operators.revoke_token("th3", now=T0 + 9) is False
    await storage.operators.set_disabled("alice", disabled=True, now=T0 + 10, actor="admin")
    assert await storage.operators.get_token("th1") == ("alice", T0 + 100, T0 + 10)
    record = await storage.operators.get("alice")
    assert record is not None
    assert record.disabled
    for missing in (
        storage.operators.unlock("bob", now=T0, actor="a"),
        storage.operators.set_password("bob", "h", now=T0, change_required=True, actor="a"),
        storage.operators.set_disabled("bob", disabled=True, now=T0, actor="a"),
        storage.operators.record_login_failure("bob", now=T0, lock_after=5, lock_for=1, peer="p", reason="r"),
    ):
        with pytest.raises(NotFound):
            await missing
    actions = [e.action for e in await storage.audit.entries(subject="alice")]
    assert actions == [
        "operator.add",
        "operator.login_failed",
        "operator.login_failed",
        "operator.locked",
        "operator.unlocked",
        "operator.login",
        "operator.password_changed",
        "operator.logout",
        "operator.disable",
    ]
    assert all(
        "h2" not in str(e.details) and "th1" not in str(e.details) for e in await storage.audit.entries()
    )


async def test_audit_reads(storage: Storage) -> None:
    for i in range(5):
        await storage.audit.append(
            actor="broker",
            action="support.request",
            subject="C-1" if i % 2 == 0 else "C-2",
            details={"i": i},
            now=T0 + i,
        )
    assert await storage.audit.count(action="support.request", subject="C-1", since=T0 + 1) == 2
    assert await storage.audit.count(action="other", subject="C-1", since=0) == 0
    page = await storage.audit.page(subject=None, limit=2, before_seq=None)
    assert [e.seq for e in page] == [5, 4]
    older = await storage.audit.page(subject="C-1", limit=10, before_seq=5)
    assert [e.seq for e in older] == [3, 1]
    entries = await storage.audit.entries()
    assert [e.details["i"] for e in entries] == [0, 1, 2, 3, 4]
    assert entries[0].at == T0  # times come back exactly
    report = await storage.audit.verify()
    assert report.ok
    assert report.checked == 5
    assert await storage.audit.head() == (5, entries[-1].hash)  # what a signed checkpoint records
    assert await storage.audit.hash_at(3) == entries[2].hash
    assert await storage.audit.hash_at(6) is None


async def test_empty_audit_log_has_no_head(storage: Storage) -> None:
    assert await storage.audit.head() is None
    assert await storage.audit.hash_at(1) is None


async def test_an_admin_lock_revokes_the_tokens_with_its_audit_entry(storage: Storage) -> None:
    await storage.operators.add(
        "bob", display_name="Bob", role="operator", password_hash="h", totp_secret_blob=b"", now=T0, actor="a"
    )
    for token in ("t1", "t2"):
        await storage.operators.store_token(token, "bob", now=T0, expires_at=T0 + 3600)
    await storage.operators.revoke_token("t2", now=T0 + 1)
    assert await storage.operators.lock("bob", until=T0 + 600, now=T0 + 2, actor="admin:x") == 1
    record = await storage.operators.get("bob")
    assert record is not None
    assert (record.locked_until, record.failed_logins) == (T0 + 600, 0)
    found = await storage.operators.by_token("t1")
    assert found is not None
    assert found[2] == T0 + 2  # revoked with the lock
    last = (await storage.audit.entries(subject="bob"))[-1]
    assert (last.actor, last.action, last.details) == (
        "admin:x",
        "operator.locked",
        {"until": T0 + 600, "tokens_revoked": 1},
    )
    with pytest.raises(NotFound):
        await storage.operators.lock("nobody", until=T0 + 600, now=T0, actor="admin")
