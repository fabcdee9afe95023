"""Enrollment: fetch and pin the CA, ask the subscriber, send a CSR, store the certificate.

Trust comes from the CA fingerprint the helpdesk hands over with the token (printed by
``python -m broker subscriber add``): the CA is fetched over HTTPS without verification, then
accepted only if its SHA-256 matches, and every later connection verifies the broker against
it. The subscriber is asked to accept the certificate (第31条1項④) before the key is made; a
"no" stores nothing.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from certs import (
    build_csr,
    fingerprint_sha256,
    generate_private_key,
    normalize_fingerprint,
    private_key_to_pem,
)
from protocol import Link, Opened, Received
from protocol.errors import ErrorCode
from protocol.messages import Enroll, Enrolled, Error
from wire import LinkRunner

from .errors import AgentError, EnrollDeclined, EnrollRefused, FingerprintMismatchError, UnreachableError
from .i18n import t
from .identity import Identity, save_identity

MAX_CA_BYTES = 64 * 1024

SOFTWARE = "isp-remote-support-agent/0.1"


@dataclass(frozen=True, slots=True)
class EnrollResult:
    identity: Identity
    not_after: float


def https_url(broker_url: str, path: str) -> str:
    parts = urllib.parse.urlsplit(broker_url)
    if parts.scheme != "wss":
        raise AgentError(f"the broker URL must start with wss:// (got {broker_url!r})")
    return urllib.parse.urlunsplit(("https", parts.netloc, path, "", ""))


def ws_url(broker_url: str, path: str) -> str:
    parts = urllib.parse.urlsplit(broker_url)
    return urllib.parse.urlunsplit(("wss", parts.netloc, path, "", ""))


def fetch_ca(broker_url: str, *, timeout: float = 10.0) -> bytes:
    """GET /ca.pem without verifying the server: the caller checks the fingerprint."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # trust comes from the pinned fingerprint, checked next
    url = https_url(broker_url, "/ca.pem")
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as response:  # noqa: S310 - https only
            data: bytes = response.read(MAX_CA_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise UnreachableError(str(exc)) from None
    if len(data) > MAX_CA_BYTES:
        raise AgentError("the CA certificate is implausibly large")
    return data


def client_ssl_context(
    ca_pem: bytes, *, cert_path: Path | None = None, key_path: Path | None = None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
    if cert_path is not None and key_path is not None:
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


async def enroll(
    *,
    broker_url: str,
    contract_id: str,
    token: str,
    ca_fingerprint: str,
    data_dir: Path,
    confirm: Callable[[str], bool],
    machine_name: str | None = None,
) -> EnrollResult:
    """Run the whole enrollment; raise an :class:`AgentError` subclass with a code on refusal."""
    pinned = normalize_fingerprint(ca_fingerprint)
    ca_pem = await asyncio.to_thread(fetch_ca, broker_url)
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        raise AgentError("the broker sent something that is not a certificate as its CA") from None
    actual = fingerprint_sha256(ca_cert)
    if actual != pinned:
        raise FingerprintMismatchError(expected=pinned, actual=actual)
    if not confirm(actual):
        raise EnrollDeclined()

    key = generate_private_key()
    csr = build_csr(key, common_name=contract_id).decode("ascii")
    name = machine_name or socket.gethostname() or "unknown"
    request = Enroll(
        id="enroll-1", contract_id=contract_id, token=token, csr_pem=csr, machine_name=name[:255]
    )
    reply = await _exchange(broker_url, ca_pem, request)

    cert = x509.load_pem_x509_certificate(reply.certificate_pem.encode("ascii"))
    cert.verify_directly_issued_by(ca_cert)
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise AgentError("the broker returned a certificate for a different key")
    identity = Identity(
        broker_url=broker_url,
        contract_id=contract_id,
        serial=reply.serial,
        ca_fingerprint=actual,
        machine_name=name,
        data_dir=data_dir,
    )
    save_identity(
        identity, key_pem=private_key_to_pem(key), cert_pem=reply.certificate_pem.encode(), ca_pem=ca_pem
    )
    return EnrollResult(identity=identity, not_after=reply.not_after)


async def _exchange(broker_url: str, ca_pem: bytes, request: Enroll) -> Enrolled:
    ctx = client_ssl_context(ca_pem)
    result: list[Enrolled | Error] = []
    close_code: int | None = None
    try:
        async with connect(
            ws_url(broker_url, "/enroll"), ssl=ctx, ping_interval=None, compression=None, open_timeout=15
        ) as ws:
            runner = LinkRunner(ws, Link(is_client=True, role="enroll", now=time.time(), software=SOFTWARE))

            async def on_event(event: object) -> None:
                if isinstance(event, Opened):
                    await runner.send(request)
                elif isinstance(event, Received) and isinstance(event.message, Enrolled | Error):
                    result.append(event.message)
                    await runner.close(1000, "done")

            await runner.run(on_event)
            close_code = ws.close_code
    except (OSError, WebSocketException, TimeoutError) as exc:
        raise UnreachableError(str(exc) or type(exc).__name__) from None
    if not result and close_code == 1011:  # reached, but it failed: not a network problem
        raise EnrollRefused("internal", t("error.internal", "en"))
    if not result:
        raise UnreachableError("the broker closed the connection without an answer")
    answer = result[0]
    if isinstance(answer, Error):
        if answer.code == ErrorCode.STORAGE_UNAVAILABLE:
            # The broker was reached and the fault is on its side, not the subscriber's connection
            # or token (issue 12); the words are agent/i18n.py's, in the subscriber's language.
            raise EnrollRefused(answer.code, t("error.storage_unavailable", "en"))
        raise EnrollRefused(answer.code, answer.message)
    return answer
