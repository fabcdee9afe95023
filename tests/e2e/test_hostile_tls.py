"""The broker as an outside scanner and a connection flood see it (issue 12, "Also"): TLS 1.2/1.3
with AEAD suites only (Mozilla "intermediate", docs/hardening.md), HSTS on HTTP answers, and a cap
on the unauthenticated connections one address may hold, enforced before TLS and audited with a count."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.storage import open_storage
from tests.e2e.conftest import ALWAYS_OPEN
from tests.helpers import BrokerProcess
from tests.wire.rawws import TEXT, RawWebSocket, frame
from tests.wire.serving import assert_still_serves, client_context, enrolled_identity
from wire.gate import DEFAULT_MAX_UNAUTHENTICATED


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "broker", extra_args=ALWAYS_OPEN).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.skipif(shutil.which("sslscan") is None, reason="sslscan missing: scripts/bootstrap --system")
async def test_a_tls_scanner_finds_only_tls12_and_13_with_aead_suites(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    scan = subprocess.run(
        ["sslscan", "--no-colour", "--no-heartbleed", f"127.0.0.1:{broker.port}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    protocols = dict(re.findall(r"^(SSLv[23]|TLSv1\.[0-3])\s+(enabled|disabled)$", scan, re.M))
    assert protocols == {
        "SSLv2": "disabled",
        "SSLv3": "disabled",
        "TLSv1.0": "disabled",
        "TLSv1.1": "disabled",
        "TLSv1.2": "enabled",
        "TLSv1.3": "enabled",
    }, scan
    suites = re.findall(r"^(?:Preferred|Accepted)\s+(TLSv1\.[23])\s+\d+ bits\s+(\S+)", scan, re.M)
    assert {version for version, _ in suites} == {"TLSv1.2", "TLSv1.3"}, scan
    names = {suite for _, suite in suites}
    assert not names & {"ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384"}, scan  # LUCKY13
    for suite in names:  # AEAD only: GCM or ChaCha20-Poly1305, never a CBC suite
        assert "GCM" in suite or "CHACHA20" in suite, suite
    assert "Compression enabled" not in scan
    await assert_still_serves(broker, tmp_path)


async def test_http_answers_carry_strict_transport_security(broker: BrokerProcess, tmp_path: Path) -> None:
    ctx = client_context(broker)
    for path in ("/healthz", "/ca.pem", "/", "/missing"):
        reader, writer = await asyncio.open_connection("127.0.0.1", broker.port, ssl=ctx)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode().lower()
        writer.close()
        assert "\r\nstrict-transport-security: max-age=63072000\r\n" in head, (path, head)
    await assert_still_serves(broker, tmp_path)


async def test_one_address_holds_a_bounded_number_of_unauthenticated_connections(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    identity = await enrolled_identity(broker, tmp_path, "C-CAP")
    cap = DEFAULT_MAX_UNAUTHENTICATED
    held = [socket.create_connection(("127.0.0.1", broker.port), timeout=10) for _ in range(cap - 1)]
    try:
        # An admitted agent stops counting: with cap - 1 plain TCP connections held, it connects,
        # and afterwards one more unauthenticated connection still fits.
        agent = await RawWebSocket.open(
            broker.port, "/agent", client_context(broker, cert=identity.cert_path, key=identity.key_path)
        )
        await agent.send(
            frame(TEXT, json.dumps({"type": "hello", "versions": [1], "role": "agent"}).encode())
        )
        assert json.loads(await agent.recv_json_text())["type"] == "hello"
        held.append(socket.create_connection(("127.0.0.1", broker.port), timeout=10))
        time.sleep(0.3)
        assert _still_open(held[-1])
        # One more is closed before any TLS: the TLS handshake fails at once.
        refused = 0
        for _ in range(5):
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", broker.port, ssl=client_context(broker)), 10
                )
            refused += 1
        # The established agent is not affected.
        await agent.send(frame(TEXT, json.dumps({"type": "ping", "id": "p", "time": 1.0}).encode()))
        assert json.loads(await agent.recv_json_text())["type"] == "pong"
        agent.abort()
    finally:
        for sock in held:
            sock.close()

    # Audited once (a minute) with the count, not once per connection.
    async def refusals() -> list[dict[str, object]]:
        storage = await open_storage(broker.data_dir / "broker.sqlite3")  # reads only: no key needed
        try:
            return [e.details for e in await storage.audit.entries() if e.action == "connection.refused"]
        finally:
            await storage.close()

    deadline = time.monotonic() + 10
    while not await refusals() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    entries = await refusals()
    assert len(entries) == 1, entries
    assert entries[0]["addresses"] == {"127.0.0.1": entries[0]["count"]}
    assert 1 <= int(str(entries[0]["count"])) <= refused
    await asyncio.sleep(0.5)  # the held connections are gone from the broker's count
    await assert_still_serves(broker, tmp_path)


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True  # nothing to read and not closed
    except OSError:
        return False
    finally:
        sock.setblocking(True)
