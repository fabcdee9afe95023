"""At-rest encryption keyring (第30条, 第32条): round trip, tamper detection, rotation, 0600 key files."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from broker.datakeys import BLOB_VERSION, DataDecryptFailed, DataKeyError, DataKeyMissing, DataKeyring
from protocol.errors import ErrorCode

AAD = b"subscriber:42|inventory:router"
SECRET = b'{"account": "admin", "password": "router-pass-\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88"}'


@pytest.fixture
def ring(tmp_path: Path) -> DataKeyring:
    return DataKeyring.open(tmp_path / "data" / "keys")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_open_creates_first_key_with_private_permissions(tmp_path: Path) -> None:
    keys = tmp_path / "data" / "keys"
    ring = DataKeyring.open(keys)
    [key_id] = ring.key_ids()
    assert ring.current_key_id() == key_id
    key_file = keys / f"{key_id}.key"
    assert key_file.stat().st_size == 32
    assert mode(key_file) == 0o600
    assert mode(keys / "current") == 0o600
    assert mode(keys) == 0o700
    assert not [p for p in keys.iterdir() if p.name.endswith(".tmp")]


def test_open_is_idempotent(tmp_path: Path) -> None:
    first = DataKeyring.open(tmp_path / "keys")
    blob = first.encrypt(SECRET, aad=AAD)
    second = DataKeyring.open(tmp_path / "keys")
    assert second.key_ids() == first.key_ids()
    assert second.decrypt(blob, aad=AAD) == SECRET


def test_concurrent_first_open_agrees_on_one_current_key(tmp_path: Path) -> None:
    rings: list[DataKeyring] = []
    lock = threading.Lock()

    def opener() -> None:
        ring = DataKeyring.open(tmp_path / "keys")
        with lock:
            rings.append(ring)

    threads = [threading.Thread(target=opener) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.current_key_id() for r in rings}) == 1
    blob = rings[0].encrypt(SECRET, aad=AAD)
    assert all(r.decrypt(blob, aad=AAD) == SECRET for r in rings)


def test_round_trip_and_ciphertext_hides_plaintext(ring: DataKeyring) -> None:
    blob = ring.encrypt(SECRET, aad=AAD)
    assert ring.decrypt(blob, aad=AAD) == SECRET
    assert blob[0] == BLOB_VERSION
    assert SECRET not in blob
    assert b"router-pass" not in blob
    assert b"admin" not in blob
    # random nonce: the same plaintext never gives the same blob
    assert ring.encrypt(SECRET, aad=AAD) != blob
    assert ring.decrypt(ring.encrypt(b"", aad=b""), aad=b"") == b""


def test_wrong_aad_fails(ring: DataKeyring) -> None:
    blob = ring.encrypt(SECRET, aad=AAD)
    with pytest.raises(DataDecryptFailed) as info:
        ring.decrypt(blob, aad=b"subscriber:43|inventory:router")
    assert info.value.reason == "data_decrypt_failed"
    assert info.value.code is ErrorCode.INTERNAL
    assert isinstance(info.value, DataKeyError)


def test_any_tampered_byte_fails(ring: DataKeyring) -> None:
    blob = ring.encrypt(SECRET, aad=AAD)
    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        with pytest.raises(DataKeyError):
            ring.decrypt(bytes(tampered), aad=AAD)
    for cut in (0, 1, 5, len(blob) - 1):
        with pytest.raises(DataDecryptFailed):
            ring.decrypt(blob[:cut], aad=AAD)


def test_rotation_keeps_old_data_readable(ring: DataKeyring) -> None:
    old_id = ring.current_key_id()
    old_blob = ring.encrypt(SECRET, aad=AAD)
    new_id = ring.rotate()
    assert new_id != old_id
    assert ring.current_key_id() == new_id
    assert sorted([old_id, new_id]) == ring.key_ids()
    new_blob = ring.encrypt(SECRET, aad=AAD)
    assert DataKeyring.blob_key_id(old_blob) == old_id
    assert DataKeyring.blob_key_id(new_blob) == new_id
    assert ring.decrypt(old_blob, aad=AAD) == SECRET
    assert ring.decrypt(new_blob, aad=AAD) == SECRET
    # a fresh process (no cache) reads both too
    reopened = DataKeyring.open(ring.directory)
    assert reopened.current_key_id() == new_id
    assert reopened.decrypt(old_blob, aad=AAD) == SECRET
    assert mode(ring.directory / f"{new_id}.key") == 0o600


def test_deleted_key_means_data_key_missing(tmp_path: Path) -> None:
    ring = DataKeyring.open(tmp_path / "keys")
    blob = ring.encrypt(SECRET, aad=AAD)
    old_id = ring.current_key_id()
    ring.rotate()
    (tmp_path / "keys" / f"{old_id}.key").unlink()
    fresh = DataKeyring.open(tmp_path / "keys")
    with pytest.raises(DataKeyMissing) as info:
        fresh.decrypt(blob, aad=AAD)
    assert info.value.reason == "data_key_missing"
    assert info.value.code is ErrorCode.INTERNAL


def test_blob_cannot_name_a_path(tmp_path: Path, ring: DataKeyring) -> None:
    (tmp_path / "evil.key").write_bytes(b"\x00" * 32)
    kid = b"../evil"
    blob = bytes([BLOB_VERSION, len(kid)]) + kid + b"\x00" * 12 + b"\x00" * 32
    with pytest.raises(DataDecryptFailed, match="malformed key id"):
        ring.decrypt(blob, aad=AAD)


def test_unknown_version_and_corrupt_current(tmp_path: Path) -> None:
    ring = DataKeyring.open(tmp_path / "keys")
    blob = ring.encrypt(SECRET, aad=AAD)
    with pytest.raises(DataDecryptFailed, match="known version"):
        ring.decrypt(b"\x02" + blob[1:], aad=AAD)
    (tmp_path / "keys" / "current").write_text("../../etc/passwd\n")
    with pytest.raises(DataKeyMissing, match="malformed"):
        ring.encrypt(SECRET, aad=AAD)


def test_short_key_file_is_rejected(tmp_path: Path) -> None:
    ring = DataKeyring.open(tmp_path / "keys")
    key_file = tmp_path / "keys" / f"{ring.current_key_id()}.key"
    os.chmod(key_file, 0o600)
    key_file.write_bytes(b"short")
    with pytest.raises(DataKeyMissing, match="32 bytes"):
        DataKeyring.open(tmp_path / "keys")
