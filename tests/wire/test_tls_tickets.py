"""Session-ticket keys on Python's ``SSLContext`` (``wire.tls_tickets``): two listeners stand for two
broker processes (each ``SSLContext`` draws its own ticket keys, as each process does). A client
offers the ticket it got from the first at the second, over real TLS 1.3 on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.tls_session import SessionCache, enable_resumption
from certs import CertificateAuthority
from wire.tls_tickets import TICKET_KEYS_BYTES, install_ticket_keys, set_ticket_lifetime, ticket_lifetime

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def server_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    ca = CertificateAuthority.create(common_name="Ticket test CA", now=NOW)
    cert_pem, key_pem = ca.issue_server_certificate(["localhost", "127.0.0.1"], now=NOW)
    d = tmp_path_factory.mktemp("tickets")
    (d / "cert.pem").write_bytes(cert_pem)
    (d / "key.pem").write_bytes(key_pem)
    return d / "cert.pem", d / "key.pem", ca.cert_pem


def _server_context(files: tuple[Path, Path, bytes]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files[0], files[1])
    return ctx


class _Hello(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"hi")  # the client reads after the handshake: the tickets come with it


@contextlib.asynccontextmanager
async def _listen(ctx: ssl.SSLContext) -> AsyncIterator[int]:
    server = await asyncio.get_running_loop().create_server(_Hello, "127.0.0.1", 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _resumed_at(ports: list[int], ca_pem: bytes) -> list[bool]:
    """Connect to each port in turn, offering the last ticket; whether each handshake resumed."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cadata=ca_pem.decode())
    cache = SessionCache()
    assert enable_resumption(client, cache)
    resumed = []
    for port in ports:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname="localhost"
        )
        assert await asyncio.wait_for(reader.readexactly(2), 10) == b"hi"
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object.version() == "TLSv1.3"
        resumed.append(bool(ssl_object.session_reused))
        cache.remember(ssl_object)
        writer.close()
        await writer.wait_closed()
    return resumed


async def _run(ctx_a: ssl.SSLContext, ctx_b: ssl.SSLContext, ca_pem: bytes) -> list[bool]:
    async with _listen(ctx_a) as port_a, _listen(ctx_b) as port_b:
        return await _resumed_at([port_a, port_b, port_b, port_a], ca_pem)


async def test_a_ticket_from_one_listener_resumes_at_another_with_the_same_keys(
    server_files: tuple[Path, Path, bytes],
) -> None:
    keys = os.urandom(TICKET_KEYS_BYTES)
    a, b = _server_context(server_files), _server_context(server_files)
    assert install_ticket_keys(a, keys)
    assert install_ticket_keys(b, keys)
    assert await _run(a, b, server_files[2]) == [False, True, True, True]


async def test_without_shared_keys_the_other_listener_makes_a_full_handshake(
    server_files: tuple[Path, Path, bytes],
) -> None:
    """The control: OpenSSL's own keys differ per context, so only the issuer resumes its ticket."""
    a, b = _server_context(server_files), _server_context(server_files)
    assert await _run(a, b, server_files[2]) == [False, False, True, False]
    a, b = _server_context(server_files), _server_context(server_files)
    assert install_ticket_keys(a, os.urandom(TICKET_KEYS_BYTES))
    assert install_ticket_keys(b, os.urandom(TICKET_KEYS_BYTES))
    assert await _run(a, b, server_files[2]) == [False, False, True, False]


async def test_new_keys_end_the_old_tickets(server_files: tuple[Path, Path, bytes]) -> None:
    """A key change (the broker's next period) is taken at once: the old ticket is refused."""
    a = _server_context(server_files)
    assert install_ticket_keys(a, os.urandom(TICKET_KEYS_BYTES))
    async with _listen(a) as port:
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(cadata=server_files[2].decode())
        cache = SessionCache()
        enable_resumption(client, cache)
        outcomes = []
        for change in (False, False, True):
            if change:
                assert install_ticket_keys(a, os.urandom(TICKET_KEYS_BYTES))
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname="localhost"
            )
            await asyncio.wait_for(reader.readexactly(2), 10)
            outcomes.append(bool(writer.get_extra_info("ssl_object").session_reused))
            cache.remember(writer.get_extra_info("ssl_object"))
            writer.close()
            await writer.wait_closed()
        assert outcomes == [False, True, False]


def test_the_ticket_lifetime_is_set_and_bounded(server_files: tuple[Path, Path, bytes]) -> None:
    ctx = _server_context(server_files)
    assert ticket_lifetime(ctx) == 7200  # OpenSSL's default
    assert set_ticket_lifetime(ctx, 86_400)
    assert ticket_lifetime(ctx) == 86_400
    with pytest.raises(ValueError, match="7 days"):
        set_ticket_lifetime(ctx, 8 * 86_400)  # RFC 8446: 7 days at most
    with pytest.raises(ValueError, match="80 bytes"):
        install_ticket_keys(ctx, b"short")


def test_an_object_that_is_not_an_ssl_context_is_never_touched() -> None:
    """The pointer is only trusted on a real ``SSLContext`` whose options OpenSSL confirms."""

    class Fake:
        options = 0

    assert not install_ticket_keys(Fake(), os.urandom(TICKET_KEYS_BYTES))  # type: ignore[arg-type]
    assert ticket_lifetime(Fake()) is None  # type: ignore[arg-type]
