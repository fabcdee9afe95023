"""The broker's key material in its data dir: CA, server certificate, TLS context.

On first start everything is created (DESIGN §6: no configuration needed): a CA with its key
encrypted by a passphrase, and a server certificate for the configured names. Later starts load
them; a server certificate close to expiry or missing a configured name is reissued.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from certs import CertificateAuthority, read_or_create_passphrase, write_public_file, write_secret_file

from .config import BrokerConfig

SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"
PASSPHRASE_FILE = "ca-passphrase"  # noqa: S105 - a file name
CA_COMMON_NAME = "ISP Remote Support CA"
RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Pki:
    ca: CertificateAuthority
    ca_path: Path
    server_cert_path: Path
    server_key_path: Path

    def server_ssl_context(self) -> ssl.SSLContext:
        """One TLS listener for every path: the client certificate is optional at the TLS layer
        (``/enroll`` has none yet) and required by the ``/agent`` handler; when one is sent it must
        chain to our CA, or the handshake fails."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.server_cert_path, self.server_key_path)
        ctx.load_verify_locations(cafile=str(self.ca_path))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx


def ensure_data_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def load_pki(config: BrokerConfig, *, now: datetime, env: Mapping[str, str] | None = None) -> Pki:
    """Load or create the CA and the server certificate under ``config.data_dir``."""
    ensure_data_dir(config.data_dir)
    passphrase = read_or_create_passphrase(
        env=os.environ if env is None else env,
        passphrase_file=config.ca_passphrase_file,
        default_file=config.data_dir / PASSPHRASE_FILE,
    )
    ca = CertificateAuthority.load_or_create(
        config.data_dir, passphrase=passphrase, common_name=CA_COMMON_NAME, now=now
    )
    cert_path = config.data_dir / SERVER_CERT
    key_path = config.data_dir / SERVER_KEY
    if _needs_server_certificate(cert_path, config.server_names, now):
        cert_pem, key_pem = ca.issue_server_certificate(list(config.server_names), now=now)
        for path in (cert_path, key_path):
            path.unlink(missing_ok=True)
        write_secret_file(key_path, key_pem)
        write_public_file(cert_path, cert_pem)
    return Pki(
        ca=ca, ca_path=config.data_dir / "ca.pem", server_cert_path=cert_path, server_key_path=key_path
    )


def _needs_server_certificate(path: Path, names: tuple[str, ...], now: datetime) -> bool:
    if not path.exists():
        return True
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if cert.not_valid_after_utc - RENEW_BEFORE <= now.astimezone(UTC):
        return True
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have = {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    }
    return not set(names) <= have


def read_ca_fingerprint(data_dir: Path) -> str | None:
    """The CA fingerprint for enrollment commands, from the public ``ca.pem`` alone."""
    from certs import fingerprint_sha256

    path = data_dir / "ca.pem"
    if not path.exists():
        return None
    return fingerprint_sha256(x509.load_pem_x509_certificate(path.read_bytes()))
