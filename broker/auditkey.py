"""The audit key: a 0600 file in the broker's data dir, beside the CA key, never in the database.

Why a file and not a database row: the audit chain must hold against someone who can edit the
SQLite file (a stolen backup restored with changes, an admin with ``sqlite3``). With the key in
the database he could recompute every MAC after deleting a row; with the key in a separate file
he cannot (docs/audit.md says what he still can do).

One secret of 32 random bytes, written atomically on first start (``certs.write_secret_file``
with ``exclusive=True``: two processes starting at once end up with the same key). Two keys are
derived from it, so one secret file serves both uses:

* the chain key: HMAC-SHA256 over every audit entry (:mod:`broker.audit`);
* the checkpoint key: an Ed25519 key whose signatures over ``(seq, hash, time)`` checkpoints can be
  checked with the public key alone (:mod:`broker.checkpoints`), e.g. by an auditor off the box.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from certs import read_or_create_secret
from protocol.errors import ErrorCode

from .errors import BrokerError

AUDIT_KEY_FILE = "audit.key"
"""Name of the key file in the data dir (0600)."""

KEY_BYTES = 32


class AuditKeyError(BrokerError):
    """The audit key file exists but cannot be used: the chain cannot be written or checked."""

    code = ErrorCode.INTERNAL


@dataclass(frozen=True, slots=True)
class AuditKey:
    chain: bytes
    """HMAC key of the audit chain."""
    signing: Ed25519PrivateKey
    """Signs checkpoints."""
    created: bool
    """True when this process created the file (first start): only then may an old, unkeyed chain
    be migrated (an existing key with an unkeyed chain means the keyed part was removed)."""

    @property
    def public(self) -> Ed25519PublicKey:
        return self.signing.public_key()

    def public_pem(self) -> str:
        return (
            self.public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
            .strip()
        )

    @classmethod
    def from_secret(cls, secret: bytes, *, created: bool = False) -> AuditKey:
        chain = hmac.new(secret, b"isp-remote-support audit chain v1", hashlib.sha256).digest()
        seed = hmac.new(secret, b"isp-remote-support audit checkpoint v1", hashlib.sha256).digest()
        return cls(chain=chain, signing=Ed25519PrivateKey.from_private_bytes(seed), created=created)


def load_or_create_audit_key(data_dir: Path) -> AuditKey:
    """Read ``data_dir/audit.key``, creating it (0600, atomically) if it does not exist yet."""
    path = data_dir / AUDIT_KEY_FILE
    try:
        secret, created = read_or_create_secret(path, KEY_BYTES)
    except OSError as exc:
        raise AuditKeyError(f"cannot read the audit key {path}: {exc.strerror}") from None
    except ValueError:
        raise AuditKeyError(f"the audit key {path} is malformed") from None
    return AuditKey.from_secret(secret, created=created)
