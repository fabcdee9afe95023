"""Atomic, permission-correct file writes for keys, certificates and passphrases.

Why not ``open(path, "w")``: a crash mid-write would leave a truncated CA key, and a file created
with the default mode is world-readable for a moment before any ``chmod``.  mitmproxy avoids the
second problem with a process-wide ``os.umask``, which races with every other thread in the broker;
instead each file is created with ``os.open(O_CREAT | O_EXCL, mode)`` under a fresh temporary name
in the *same* directory (so the rename cannot cross file systems), written, fsynced, and moved into
place with ``os.replace``, after which the directory itself is fsynced so the rename survives a
power cut.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from .errors import CAKeyError, CertError

SECRET_FILE_MODE = 0o600
"""Keys and passphrases: owner only."""

PUBLIC_FILE_MODE = 0o644
"""Certificates and CRLs: anyone may read them (the broker serves ca.pem to agents anyway)."""

PASSPHRASE_RANDOM_BYTES = 32
"""Entropy of a generated CA passphrase; stored as URL-safe base64 text so it can be pasted."""

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable.  Windows cannot open directories, and NTFS journals renames anyway."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int, *, exclusive: bool) -> None:
    if path.is_symlink():
        # os.replace would swap the link itself, not follow it; still, a symlink where we keep
        # keys means someone is meddling with the directory, so refuse loudly.
        raise CertError(f"refusing to write through symlink: {path}")
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_BINARY | _O_CLOEXEC
    fd = os.open(tmp, flags, mode)
    try:
        try:
            if hasattr(os, "fchmod"):
                # The umask can only remove bits; 0644 must stay 0644 even under umask 077.
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            _link_no_clobber(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _link_no_clobber(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if ``path`` does not exist, atomically where the FS allows.

    ``os.link`` fails with ``FileExistsError`` instead of replacing, which closes the window between
    "does it exist?" and the rename.  File systems without hard links (FAT, some shares) fall back
    to check-then-replace.
    """
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        if os.path.lexists(path):
            raise FileExistsError(f"file exists: {path}") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def write_secret_file(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically, never following a symlink.

    ``exclusive=True`` raises ``FileExistsError`` instead of replacing an existing file (used for the
    CA key, which must never be silently replaced).
    """
    _write_atomic(path, data, SECRET_FILE_MODE, exclusive=exclusive)


def write_public_file(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0644, atomically (see :func:`write_secret_file`)."""
    _write_atomic(path, data, PUBLIC_FILE_MODE, exclusive=exclusive)


def _strip_newline(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


def read_or_create_passphrase(
    *,
    env: Mapping[str, str],
    env_var: str = "BROKER_CA_PASSPHRASE",
    passphrase_file: Path | None,
    default_file: Path,
) -> bytes:
    """Return the CA key passphrase.

    Precedence: ``env[env_var]`` if set and non-empty; else ``passphrase_file`` if given (it must
    exist: an operator who names a file expects that file, not a fresh random one that would make
    the existing CA key unreadable); else ``default_file``, created with 32 random bytes of
    URL-safe base64 text (0600) if missing, so a first start needs no configuration and the CA key
    is still never stored unencrypted.  One trailing newline is stripped (editors add one).

    ``env`` is passed in rather than read from ``os.environ`` so tests need no monkeypatching.
    """
    from_env = env.get(env_var, "")
    if from_env:
        return _strip_newline(from_env.encode("utf-8"))

    if passphrase_file is not None:
        try:
            data = passphrase_file.read_bytes()
        except FileNotFoundError:
            raise CAKeyError(f"passphrase file not found: {passphrase_file}") from None
        except OSError as exc:
            raise CAKeyError(f"cannot read passphrase file {passphrase_file}: {exc.strerror}") from None
        passphrase = _strip_newline(data)
        if not passphrase:
            raise CAKeyError(f"passphrase file is empty: {passphrase_file}")
        return passphrase

    try:
        data = default_file.read_bytes()
    except FileNotFoundError:
        default_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        generated = base64.urlsafe_b64encode(secrets.token_bytes(PASSPHRASE_RANDOM_BYTES)).rstrip(b"=")
        try:
            write_secret_file(default_file, generated + b"\n", exclusive=True)
        except FileExistsError:
            # Another process created it between our read and write: use theirs.
            data = default_file.read_bytes()
        else:
            return generated
    except OSError as exc:
        raise CAKeyError(f"cannot read passphrase file {default_file}: {exc.strerror}") from None
    passphrase = _strip_newline(data)
    if not passphrase:
        raise CAKeyError(f"passphrase file is empty: {default_file}")
    return passphrase


def read_or_create_secret(path: Path, nbytes: int) -> tuple[bytes, bool]:
    """The ``nbytes`` random secret kept base64 in ``path`` (0600), created atomically on first use;
    and whether this call created it. Two processes starting at once end up with the same secret
    (exclusive creation: the loser reads the winner's). ``ValueError`` if the file is malformed,
    ``OSError`` if it cannot be read or written."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        secret = secrets.token_bytes(nbytes)
        try:
            write_secret_file(path, base64.b64encode(secret) + b"\n", exclusive=True)
        except FileExistsError:
            data = path.read_bytes()  # another process won the race: use its secret
        else:
            return secret, True
    try:
        secret = base64.b64decode(data.strip(), validate=True)
    except ValueError:  # binascii.Error is a ValueError
        raise ValueError(f"{path} is malformed") from None
    if len(secret) != nbytes:
        raise ValueError(f"{path} is malformed")
    return secret, False
