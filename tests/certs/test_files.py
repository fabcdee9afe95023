from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from certs import CAKeyError, CertError, read_or_create_passphrase, write_public_file, write_secret_file

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
def test_secret_file_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    write_secret_file(path, b"secret")
    assert path.read_bytes() == b"secret"
    assert _mode(path) == 0o600


@posix_only
def test_public_file_is_0644_even_under_strict_umask(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    old = os.umask(0o077)
    try:
        write_public_file(path, b"public")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"public"
    assert _mode(path) == 0o644


def test_atomic_write_leaves_no_temp_file(tmp_path: Path) -> None:
    write_secret_file(tmp_path / "a", b"1")
    write_public_file(tmp_path / "b", b"2")
    write_secret_file(tmp_path / "a", b"3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    assert (tmp_path / "a").read_bytes() == b"3"


@posix_only
def test_replacing_tightens_mode_of_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"old")
    path.chmod(0o666)
    write_secret_file(path, b"new")
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o600


def test_exclusive_refuses_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        write_secret_file(path, b"new", exclusive=True)
    assert path.read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]


def test_exclusive_creates_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    write_secret_file(path, b"new", exclusive=True)
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]


def test_failed_write_removes_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "occupied"
    target.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(OSError):  # noqa: PT011 - the exact errno differs between OSes
        write_secret_file(target, b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["occupied"]


@posix_only
def test_refuses_to_write_through_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    link = tmp_path / "key.pem"
    link.symlink_to(victim)
    with pytest.raises(CertError, match="symlink"):
        write_secret_file(link, b"evil")
    with pytest.raises(CertError, match="symlink"):
        write_public_file(link, b"evil")
    assert victim.read_bytes() == b"untouched"
    assert link.is_symlink()


# -- read_or_create_passphrase -------------------------------------------------------------


def test_env_var_wins(tmp_path: Path) -> None:
    given = tmp_path / "given"
    given.write_bytes(b"from-file\n")
    default = tmp_path / "default"
    result = read_or_create_passphrase(
        env={"BROKER_CA_PASSPHRASE": "from-env"}, passphrase_file=given, default_file=default
    )
    assert result == b"from-env"
    assert not default.exists()


def test_custom_env_var_name(tmp_path: Path) -> None:
    result = read_or_create_passphrase(
        env={"OTHER": "x\n", "BROKER_CA_PASSPHRASE": "no"},
        env_var="OTHER",
        passphrase_file=None,
        default_file=tmp_path / "default",
    )
    assert result == b"x"


def test_empty_env_var_falls_through_to_given_file(tmp_path: Path) -> None:
    given = tmp_path / "given"
    given.write_bytes(b"from-file\n")
    result = read_or_create_passphrase(
        env={"BROKER_CA_PASSPHRASE": ""}, passphrase_file=given, default_file=tmp_path / "default"
    )
    assert result == b"from-file"


def test_given_file_strips_only_the_trailing_newline(tmp_path: Path) -> None:
    given = tmp_path / "given"
    given.write_bytes(b" pass phrase \r\n")
    result = read_or_create_passphrase(env={}, passphrase_file=given, default_file=tmp_path / "d")
    assert result == b" pass phrase "


def test_missing_given_file_is_an_error_not_a_new_passphrase(tmp_path: Path) -> None:
    default = tmp_path / "default"
    with pytest.raises(CAKeyError, match="not found") as info:
        read_or_create_passphrase(env={}, passphrase_file=tmp_path / "missing", default_file=default)
    assert info.value.code == "ca_key_error"
    assert not default.exists()


def test_empty_given_file_is_an_error(tmp_path: Path) -> None:
    given = tmp_path / "given"
    given.write_bytes(b"\n")
    with pytest.raises(CAKeyError, match="empty"):
        read_or_create_passphrase(env={}, passphrase_file=given, default_file=tmp_path / "d")


def test_default_file_is_created_once(tmp_path: Path) -> None:
    default = tmp_path / "sub" / "ca-passphrase"
    first = read_or_create_passphrase(env={}, passphrase_file=None, default_file=default)
    assert len(first) == 43  # 32 random bytes, URL-safe base64 without padding
    assert set(first) <= set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert default.read_bytes() == first + b"\n"
    if os.name == "posix":
        assert _mode(default) == 0o600
    second = read_or_create_passphrase(env={}, passphrase_file=None, default_file=default)
    assert second == first
    other = read_or_create_passphrase(env={}, passphrase_file=None, default_file=tmp_path / "other")
    assert other != first


def test_existing_default_file_is_read(tmp_path: Path) -> None:
    default = tmp_path / "ca-passphrase"
    default.write_bytes(b"operator-chosen\n")
    assert read_or_create_passphrase(env={}, passphrase_file=None, default_file=default) == b"operator-chosen"
