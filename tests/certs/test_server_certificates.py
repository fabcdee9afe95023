"""The broker's server certificate: contents, hostnames, and real TLS handshakes with Python's ``ssl``
(server-only and mutual).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from certs import (
    BACKDATE,
    SERVER_VALIDITY,
    CertError,
    CertificateAuthority,
    build_csr,
    generate_private_key,
    private_key_to_pem,
    write_public_file,
    write_secret_file,
)
from tests.certs.certificates import CN, ext, ski

# -- server certificates --------------------------------------------------------------------


def test_server_certificate_contents(ca: CertificateAuthority, now: datetime) -> None:
    cert_pem, key_pem = ca.issue_server_certificate(["localhost", "127.0.0.1", "::1"], now=now)
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = ext(cert, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    eku = ext(cert, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == ski(ca.certificate)
    assert cert.not_valid_before_utc == now - BACKDATE
    assert cert.not_valid_after_utc == now + SERVER_VALIDITY
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(key_pem, password=None)
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*der) == cert.public_key().public_bytes(*der)
    verifier = (
        PolicyBuilder()
        .store(Store([ca.certificate]))
        .time(now)
        .build_server_verifier(x509.DNSName("localhost"))
    )
    verifier.verify(cert, [])


@pytest.mark.parametrize("hostnames", [[], "localhost", ["bad..name"]])
def test_server_certificate_rejects_bad_hostnames(
    ca: CertificateAuthority, now: datetime, hostnames: list[str] | str
) -> None:
    with pytest.raises(CertError):
        ca.issue_server_certificate(hostnames, now=now)


def _tls_handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str
) -> BaseException | None:
    """Real TLS over a socketpair; returns the client's exception, or None if a byte round-tripped."""
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(10)
    client_sock.settimeout(10)

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(server_sock, server_side=True) as tls:
                tls.sendall(tls.recv(1))
        except (OSError, ssl.SSLError):
            pass  # the client's side of the story is what the test checks

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with client_ctx.wrap_socket(client_sock, server_hostname=server_hostname) as tls:
            tls.sendall(b"!")
            assert tls.recv(1) == b"!"
    except (OSError, ssl.SSLError) as exc:
        return exc
    finally:
        client_sock.close()
        thread.join(10)
        server_sock.close()
    return None


def _contexts(
    ca: CertificateAuthority, trusted: CertificateAuthority, tmp_path: Path
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    now = datetime.now(UTC)  # OpenSSL checks validity against the real clock
    cert_pem, key_pem = ca.issue_server_certificate(["localhost", "127.0.0.1", "::1"], now=now)
    write_public_file(tmp_path / "server.pem", cert_pem)
    write_secret_file(tmp_path / "server-key.pem", key_pem)
    write_public_file(tmp_path / "trusted-ca.pem", trusted.cert_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server-key.pem")
    client_ctx = ssl.create_default_context(cafile=tmp_path / "trusted-ca.pem")
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return server_ctx, client_ctx


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
def test_server_certificate_works_with_python_ssl(tmp_path: Path, server_hostname: str) -> None:
    ca = CertificateAuthority.create(common_name="Live CA", now=datetime.now(UTC))
    server_ctx, client_ctx = _contexts(ca, ca, tmp_path)
    assert _tls_handshake(server_ctx, client_ctx, server_hostname) is None


def test_server_certificate_fails_for_a_foreign_ca(tmp_path: Path) -> None:
    live = datetime.now(UTC)
    ca = CertificateAuthority.create(common_name="Live CA", now=live)
    foreign = CertificateAuthority.create(common_name="Foreign CA", now=live)
    server_ctx, client_ctx = _contexts(ca, foreign, tmp_path)
    error = _tls_handshake(server_ctx, client_ctx, "localhost")
    assert isinstance(error, ssl.SSLCertVerificationError)


def test_server_certificate_fails_for_another_hostname(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(common_name="Live CA", now=datetime.now(UTC))
    server_ctx, client_ctx = _contexts(ca, ca, tmp_path)
    error = _tls_handshake(server_ctx, client_ctx, "broker.example")
    assert isinstance(error, ssl.SSLCertVerificationError)


def test_client_certificate_works_for_mutual_tls(tmp_path: Path) -> None:
    """The broker will demand the agent's certificate; OpenSSL must accept what we issue (clientAuth)."""
    live = datetime.now(UTC)
    ca = CertificateAuthority.create(common_name="Live CA", now=live)
    server_ctx, client_ctx = _contexts(ca, ca, tmp_path)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    server_ctx.load_verify_locations(tmp_path / "trusted-ca.pem")
    key = generate_private_key()
    leaf = ca.sign_client_csr(build_csr(key, common_name=CN), expected_common_name=CN, now=live)
    write_public_file(tmp_path / "agent.pem", leaf.public_bytes(serialization.Encoding.PEM))
    write_secret_file(tmp_path / "agent-key.pem", private_key_to_pem(key))
    client_ctx.load_cert_chain(tmp_path / "agent.pem", tmp_path / "agent-key.pem")
    assert _tls_handshake(server_ctx, client_ctx, "localhost") is None


def test_mutual_tls_refuses_a_client_certificate_from_a_foreign_ca(tmp_path: Path) -> None:
    live = datetime.now(UTC)
    ca = CertificateAuthority.create(common_name="Live CA", now=live)
    foreign = CertificateAuthority.create(common_name="Foreign CA", now=live)
    server_ctx, client_ctx = _contexts(ca, ca, tmp_path)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(tmp_path / "trusted-ca.pem")
    key = generate_private_key()
    leaf = foreign.sign_client_csr(build_csr(key, common_name=CN), expected_common_name=CN, now=live)
    write_public_file(tmp_path / "agent.pem", leaf.public_bytes(serialization.Encoding.PEM))
    write_secret_file(tmp_path / "agent-key.pem", private_key_to_pem(key))
    client_ctx.load_cert_chain(tmp_path / "agent.pem", tmp_path / "agent-key.pem")
    assert _tls_handshake(server_ctx, client_ctx, "localhost") is not None
