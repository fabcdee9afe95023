"""At-rest encryption keys for personal data held by the broker (第30条, 第32条).

Why: inventory (別紙5), and above all router login credentials typed in by a subscriber (別紙5 (11)), are
personal data the ISP must protect (第30条) and delete at the end of the contract (第32条). The broker
therefore stores them only as AES-256-GCM ciphertext. Keys live apart from the database
(``data_dir/keys/``), so a copied database file alone reveals nothing, and deleting a key makes every blob
under it unreadable.

Layout: one file per key id holding 32 random bytes, mode 0600, written to a temporary name created with
``O_CREAT | O_EXCL`` and 0600 from the first byte, fsynced, then renamed into place; a ``current`` file
names the key used for new data. ``rotate`` makes a new current key and keeps the old ones so older blobs
stay readable.

Blob format (self-describing, so rotation needs no side table)::

    version (1 byte, 0x01) | key id length (1 byte) | key id (ASCII) | nonce (12 bytes) | ciphertext + tag

The header (version, key id, nonce) is bound into the AES-GCM associated data together with the caller's
``aad``, so swapping the key id or any header byte makes decryption fail instead of silently misreading.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certs import write_secret_file
from protocol.errors import ErrorCode

from .errors import BrokerError

__all__ = ["BLOB_VERSION", "DataDecryptFailed", "DataKeyError", "DataKeyMissing", "DataKeyring"]

BLOB_VERSION: Final = 1
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
_CURRENT: Final = "current"
_SUFFIX: Final = ".key"
#: Key ids become file names: a strict alphabet keeps an attacker-supplied blob from naming another path.
_KEY_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class DataKeyError(BrokerError):
    """Base of the keyring's errors: the broker's own fault, ``internal`` on the wire; ``reason`` is
    a stable word for logs saying which (the codes these errors had before issue 14)."""

    code = ErrorCode.INTERNAL
    reason: str = "data_key_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class DataKeyMissing(DataKeyError):
    """The key a blob names (or the current key) is absent or unusable: the data cannot be read."""

    reason = "data_key_missing"


class DataDecryptFailed(DataKeyError):
    """The blob is malformed, was tampered with, or the associated data does not match."""

    reason = "data_decrypt_failed"


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable: losing a key after a crash would lose every blob under it."""
    with contextlib.suppress(OSError):  # not every platform/filesystem can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_private(directory: Path, final_name: str, data: bytes, *, replace: bool) -> None:
    """Write ``data`` to ``directory/final_name`` with mode 0600 from creation, atomically.

    ``replace=False`` refuses to overwrite (used for "current" on first open, so two brokers starting at
    once agree on one first key): ``FileExistsError`` then. The file handling is the CA's own.
    """
    write_secret_file(directory / final_name, data, exclusive=not replace)


class DataKeyring:
    """AES-256-GCM keys in a directory; thread-safe; use ``DataKeyring.open(data_dir / "keys")``."""

    def __init__(self, directory: Path) -> None:
        """Prefer ``open``; this does not create anything."""
        self._dir = directory
        self._lock = threading.Lock()
        self._keys: dict[str, bytes] = {}

    @property
    def directory(self) -> Path:
        return self._dir

    @classmethod
    def open(cls, directory: Path | str) -> DataKeyring:
        """Open (creating with mode 0700 if needed) the key directory; create the first key if there is
        none."""
        path = Path(directory)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        ring = cls(path)
        if not (path / _CURRENT).exists():
            key_id = ring._new_key()
            with contextlib.suppress(FileExistsError):  # another process won the race: use its key
                _write_private(path, _CURRENT, key_id.encode("ascii") + b"\n", replace=False)
        ring.current_key_id()  # fail now, not at the first write, if "current" is unusable
        return ring

    def current_key_id(self) -> str:
        """The key id new data is encrypted under."""
        try:
            key_id = (self._dir / _CURRENT).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataKeyMissing(f"no current data key in {self._dir}: {exc}") from exc
        if not _KEY_ID.match(key_id):
            raise DataKeyMissing(f"the current-key pointer in {self._dir} is malformed")
        self._key(key_id)
        return key_id

    def key_ids(self) -> list[str]:
        """All key ids present (old ones are kept for decryption), sorted."""
        return sorted(
            p.name[: -len(_SUFFIX)]
            for p in self._dir.iterdir()
            if p.name.endswith(_SUFFIX) and _KEY_ID.match(p.name[: -len(_SUFFIX)])
        )

    def _new_key(self) -> str:
        # Time-ordered prefix for humans reading the directory; random suffix for uniqueness across processes.
        key_id = f"k{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(6)}"
        _write_private(self._dir, key_id + _SUFFIX, secrets.token_bytes(KEY_BYTES), replace=False)
        return key_id

    def _key(self, key_id: str) -> bytes:
        with self._lock:
            cached = self._keys.get(key_id)
        if cached is not None:
            return cached
        if not _KEY_ID.match(key_id):
            raise DataKeyMissing("malformed data key id")
        try:
            key = (self._dir / (key_id + _SUFFIX)).read_bytes()
        except OSError as exc:
            raise DataKeyMissing(f"data key {key_id} is not available: {exc.strerror or exc}") from exc
        if len(key) != KEY_BYTES:
            raise DataKeyMissing(f"data key {key_id} is not {KEY_BYTES} bytes long")
        with self._lock:
            self._keys[key_id] = key
        return key

    def rotate(self) -> str:
        """Create a new key and make it current; old keys stay so existing blobs remain readable."""
        key_id = self._new_key()
        _write_private(self._dir, _CURRENT, key_id.encode("ascii") + b"\n", replace=True)
        return key_id

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> bytes:
        """Encrypt under the current key. ``aad`` should name what the blob is (e.g. subscriber and item id)
        so a blob copied to another record fails to decrypt there.
        """
        key_id = self.current_key_id()
        nonce = secrets.token_bytes(NONCE_BYTES)  # random 96-bit nonces: safe far beyond our volume per key
        kid = key_id.encode("ascii")
        header = bytes([BLOB_VERSION, len(kid)]) + kid + nonce
        return header + AESGCM(self._key(key_id)).encrypt(nonce, plaintext, header + aad)

    @staticmethod
    def blob_key_id(blob: bytes) -> str:
        """The key id a blob was written under (for re-encryption after rotation)."""
        return DataKeyring._parse(blob)[0]

    @staticmethod
    def _parse(blob: bytes) -> tuple[str, bytes, bytes, bytes]:
        if len(blob) < 2 or blob[0] != BLOB_VERSION:
            raise DataDecryptFailed("not an encrypted data blob of a known version")
        kid_len = blob[1]
        start = 2 + kid_len
        if kid_len == 0 or len(blob) < start + NONCE_BYTES + 16:
            raise DataDecryptFailed("encrypted data blob is truncated")
        try:
            key_id = blob[2:start].decode("ascii")
        except UnicodeDecodeError as exc:
            raise DataDecryptFailed("encrypted data blob has a malformed key id") from exc
        if not _KEY_ID.match(key_id):
            raise DataDecryptFailed("encrypted data blob has a malformed key id")
        nonce = blob[start : start + NONCE_BYTES]
        return key_id, blob[: start + NONCE_BYTES], nonce, blob[start + NONCE_BYTES :]

    def decrypt(self, blob: bytes, *, aad: bytes) -> bytes:
        """Decrypt with the key the blob names; raise ``DataDecryptFailed`` on any tampering or wrong
        ``aad``."""
        key_id, header, nonce, ciphertext = self._parse(blob)
        key = self._key(key_id)
        try:
            return AESGCM(key).decrypt(nonce, ciphertext, header + aad)
        except InvalidTag as exc:
            raise DataDecryptFailed(
                "encrypted data failed authentication (tampered, or wrong context)"
            ) from exc
