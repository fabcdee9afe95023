"""Hostile input against a real broker listener (in-process, real TLS on 127.0.0.1).

Each refusal has a stable code; after all of them the broker still serves a good agent and no
stored row was lost or half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from agent.identity import Identity
from broker.enrollment import issue_token
from certs import CertificateAuthority, build_csr, generate_private_key, private_key_to_pem, serial_hex
from tests.helpers import InProcessBroker, in_process_broker


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[InProcessBroker]:
    async with in_process_broker(tmp_path / "broker", revocation_poll_interval=0.2) as running:
        yield running


def _hello(role: str) -> str:
    return json.dumps({"type": "hello", "versions": [1], "role": role})


async def _recv_json(ws: ClientConnection) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(frame, str)
    result: dict[str, Any] = json.loads(frame)
    return result


def _agent_ctx(broker: InProcessBroker, identity: Identity) -> ssl.SSLContext:
    return broker.client_context(cert=identity.cert_path, key=identity.key_path)


async def _open_agent(broker: InProcessBroker, ctx: ssl.SSLContext) -> ClientConnection:
    ws = await connect(f"{broker.url}/agent", ssl=ctx, ping_interval=None)
    with contextlib.suppress(ConnectionClosed):  # a refusal may close before our hello is sent
        await ws.send(_hello("agent"))
    return ws


async def _drain(ws: ClientConnection) -> None:
    """Read until the connection closes (raises ConnectionClosed)."""
    while True:
        await asyncio.wait_for(ws.recv(), 10)


async def _enroll_raw(broker: InProcessBroker, **fields: Any) -> dict[str, Any]:
    async with connect(f"{broker.url}/enroll", ssl=broker.client_context()) as ws:
        await ws.send(_hello("enroll"))
        assert (await _recv_json(ws))["type"] == "hello"
        await ws.send(json.dumps({"type": "enroll", "id": "e1", "machine_name": "pc", **fields}))
        return await _recv_json(ws)


async def _records_written(broker: InProcessBroker) -> None:
    """Refusal audits are written by the broker's storage thread: wait until it has caught up."""
    assert await broker.broker.background.wait_idle(10)


def _csr(contract: str) -> str:
    return build_csr(generate_private_key(), common_name=contract).decode()


async def test_enrollment_token_refusals(broker: InProcessBroker) -> None:
    now = time.time()
    await broker.store.subscribers.add("C-1", now=now, actor="test")
    token = await issue_token(broker.store, "C-1", now=now, ttl=3600, actor="test")
    expired = await issue_token(broker.store, "C-1", now=now - 7200, ttl=3600, actor="test")

    unknown = await _enroll_raw(broker, contract_id="C-1", token="x" * 43, csr_pem=_csr("C-1"))
    assert unknown["code"] == "token_unknown"
    assert (await _enroll_raw(broker, contract_id="C-1", token=expired, csr_pem=_csr("C-1")))["code"] == (
        "token_expired"
    )
    wrong_subject = await _enroll_raw(broker, contract_id="C-1", token=token, csr_pem=_csr("C-other"))
    assert wrong_subject["code"] == "csr_subject_mismatch"

    # A CSR whose signature does not match its key (the "wrong key"): refused, token kept.
    key = generate_private_key()
    good = build_csr(key, common_name="C-1")
    from cryptography import x509

    der = bytearray(x509.load_pem_x509_csr(good).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x55
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    assert (await _enroll_raw(broker, contract_id="C-1", token=token, csr_pem=tampered))["code"] == "bad_csr"
    assert (await _enroll_raw(broker, contract_id="C-1", token=token, csr_pem="garbage"))["code"] == "bad_csr"

    ok = await _enroll_raw(broker, contract_id="C-1", token=token, csr_pem=_csr("C-1"))
    assert ok["type"] == "enrolled"
    reused = await _enroll_raw(broker, contract_id="C-1", token=token, csr_pem=_csr("C-1"))
    assert reused["code"] == "token_used"
    assert [c.serial for c in await broker.store.certificates.list_all("C-1")] == [ok["serial"]]
    await _records_written(broker)
    refusals = [e.details["code"] for e in await broker.store.audit.entries() if e.action == "enroll.refused"]
    # The second bad CSR from the same address within a minute is counted, not written again.
    assert refusals == ["token_unknown", "token_expired", "csr_subject_mismatch", "bad_csr", "token_used"]


async def test_two_enrollments_racing_for_one_token_issue_one_certificate(broker: InProcessBroker) -> None:
    await broker.store.subscribers.add("C-2", now=time.time(), actor="test")
    token = await issue_token(broker.store, "C-2", now=time.time(), ttl=3600, actor="test")
    answers = await asyncio.gather(
        *(_enroll_raw(broker, contract_id="C-2", token=token, csr_pem=_csr("C-2")) for _ in range(4))
    )
    assert sorted(a["type"] for a in answers) == ["enrolled", "error", "error", "error"]
    assert len(await broker.store.certificates.list_all("C-2")) == 1


async def test_bad_messages_get_codes_and_the_connection_survives(
    broker: InProcessBroker, tmp_path: Path
) -> None:
    identity = await broker.enroll_agent("C-3", tmp_path / "C-3")
    ws = await _open_agent(broker, _agent_ctx(broker, identity))
    try:
        assert (await _recv_json(ws))["type"] == "hello"
        await ws.send("{not json")
        assert (await _recv_json(ws))["code"] == "malformed"
        await ws.send(json.dumps({"type": "teleport"}))
        assert (await _recv_json(ws))["code"] == "unknown_type"
        await ws.send(json.dumps({"type": "ping", "id": "p", "time": 1.0, "extra": "x" * 70_000}))
        assert (await _recv_json(ws))["code"] == "too_large"
        await ws.send(json.dumps({"type": "ping", "id": "p"}))
        assert (await _recv_json(ws))["code"] == "invalid_field"
        await ws.send(json.dumps({"type": "ping", "id": "p2", "time": 5.0}))
        assert await _recv_json(ws) == {"type": "pong", "id": "p2", "time": 5.0}
    finally:
        await ws.close()


async def test_too_many_bad_messages_close_the_connection(broker: InProcessBroker, tmp_path: Path) -> None:
    identity = await broker.enroll_agent("C-4", tmp_path / "C-4")
    ws = await _open_agent(broker, _agent_ctx(broker, identity))
    await _recv_json(ws)
    for _ in range(10):
        await ws.send("[]")
    with pytest.raises(ConnectionClosed) as closed:
        await _drain(ws)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "too_many_errors")


async def test_agent_path_requires_a_certificate(broker: InProcessBroker) -> None:
    async with connect(f"{broker.url}/agent", ssl=broker.client_context()) as ws:
        refusal = await _recv_json(ws)
        assert refusal["code"] == "cert_required"
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.reason == "cert_required"


async def test_revoked_certificate_is_refused_and_live_connection_closed(
    broker: InProcessBroker, tmp_path: Path
) -> None:
    identity = await broker.enroll_agent("C-5", tmp_path / "C-5")
    live = await _open_agent(broker, _agent_ctx(broker, identity))
    await _recv_json(live)
    await broker.store.certificates.revoke(identity.serial, now=time.time(), actor="test", reason="test")
    # The watcher closes the live connection with the revocation code.
    assert (await _recv_json(live))["code"] == "cert_revoked"
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(live.recv(), 10)
    # A new connection is refused before hello.
    again = await _open_agent(broker, _agent_ctx(broker, identity))
    assert (await _recv_json(again))["code"] == "cert_revoked"
    with contextlib.suppress(ConnectionClosed):
        await again.close()


def _foreign_identity(
    tmp_path: Path, *, ca: CertificateAuthority, now: datetime, validity: timedelta
) -> tuple[Path, Path, str]:
    key = generate_private_key()
    cert = ca.sign_client_csr(
        build_csr(key, common_name="C-x"), expected_common_name="C-x", now=now, validity=validity
    )
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(private_key_to_pem(key))
    return cert_path, key_path, serial_hex(cert)


async def _try_agent(broker: InProcessBroker, cert: Path, key: Path) -> None:
    ws = await connect(f"{broker.url}/agent", ssl=broker.client_context(cert=cert, key=key), open_timeout=10)
    await ws.send(_hello("agent"))
    await asyncio.wait_for(ws.recv(), 10)


async def _tls_refused(broker: InProcessBroker, cert: Path, key: Path) -> None:
    # TLS 1.3 sends the client certificate after the server's Finished: the refusal shows up as
    # an alert on the first read rather than in connect().
    with pytest.raises((ssl.SSLError, OSError, EOFError, InvalidHandshake, ConnectionClosed)):
        await _try_agent(broker, cert, key)


async def test_foreign_ca_and_expired_certificates_fail_the_tls_handshake(
    broker: InProcessBroker, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    foreign = CertificateAuthority.create(common_name="Someone else", now=now)
    cert, key, _ = _foreign_identity(tmp_path, ca=foreign, now=now, validity=timedelta(days=30))
    await _tls_refused(broker, cert, key)

    (tmp_path / "exp").mkdir()
    cert, key, _ = _foreign_identity(
        tmp_path / "exp", ca=broker.pki.ca, now=now - timedelta(days=10), validity=timedelta(days=1)
    )
    await _tls_refused(broker, cert, key)


async def test_certificate_from_our_ca_but_never_enrolled_is_unknown(
    broker: InProcessBroker, tmp_path: Path
) -> None:
    cert, key, _ = _foreign_identity(
        tmp_path, ca=broker.pki.ca, now=datetime.now(UTC), validity=timedelta(days=1)
    )
    ws = await _open_agent(broker, broker.client_context(cert=cert, key=key))
    assert (await _recv_json(ws))["code"] == "cert_unknown"
    await ws.close()


async def test_broker_keeps_serving_after_hostile_clients(broker: InProcessBroker, tmp_path: Path) -> None:
    identity = await broker.enroll_agent("C-6", tmp_path / "C-6")
    good = await _open_agent(broker, _agent_ctx(broker, identity))
    await _recv_json(good)
    # Hostile clients: garbage before hello, wrong role, oversize frame, abrupt disconnects.
    for frame in ("garbage", _hello("operator"), "x" * 100_000):
        async with connect(f"{broker.url}/agent", ssl=_agent_ctx(broker, identity)) as bad:
            await bad.send(frame)
            with pytest.raises(ConnectionClosed):
                await _drain(bad)
    # One of those replaced the good connection (same certificate); reconnect and check service.
    good = await _open_agent(broker, _agent_ctx(broker, identity))
    assert (await _recv_json(good))["type"] == "hello"
    await good.send(json.dumps({"type": "ping", "id": "alive", "time": 1.0}))
    assert (await _recv_json(good))["id"] == "alive"
    await good.close()
    assert (await broker.store.audit.verify()).ok
    assert [c.contract_id for c in await broker.store.certificates.list_all()] == ["C-6"]


async def test_http_paths(broker: InProcessBroker) -> None:
    import urllib.request

    ctx = broker.client_context()
    base = broker.url.replace("wss://", "https://")
    ca = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{base}/ca.pem", context=ctx).read())
    assert ca == broker.ca_pem()
    crl = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{base}/crl.pem", context=ctx).read())
    assert crl.startswith(b"-----BEGIN X509 CRL-----")
    with pytest.raises(urllib.error.HTTPError) as missing:
        await asyncio.to_thread(lambda: urllib.request.urlopen(f"{base}/nope", context=ctx).read())
    assert missing.value.code == 404


async def test_a_flood_of_enrollment_attempts_is_cut_off_and_audited_sparingly(
    broker: InProcessBroker,
) -> None:
    await broker.store.subscribers.add("C-7", now=time.time(), actor="test")
    answers = [
        (await _enroll_raw(broker, contract_id="C-7", token="y" * 43, csr_pem=_csr("C-7")))["code"]
        for _ in range(25)
    ]
    assert answers[:20] == ["token_unknown"] * 20
    assert answers[20:] == ["rate_limited"] * 5
    await _records_written(broker)
    audited = [e.details for e in await broker.store.audit.entries() if e.action == "enroll.refused"]
    assert [d["code"] for d in audited] == ["token_unknown", "rate_limited"]
    # Another address (127.0.0.2 is loopback too) is served as usual.
    token = await issue_token(broker.store, "C-7", now=time.time(), ttl=3600, actor="test")
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    other.bind(("127.0.0.2", 0))
    other.connect(("127.0.0.1", broker.broker.port))
    async with connect(f"{broker.url}/enroll", ssl=broker.client_context(), sock=other) as ws:
        await ws.send(_hello("enroll"))
        await _recv_json(ws)
        request = {"type": "enroll", "id": "e", "machine_name": "pc", "contract_id": "C-7", "token": token}
        await ws.send(json.dumps({**request, "csr_pem": _csr("C-7")}))
        assert (await _recv_json(ws))["type"] == "enrolled"
