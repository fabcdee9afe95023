"""The agent's identity on disk: round trip, 0600 files in a 0700 directory, agent.json last."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import agent.identity as identity_module
from agent.identity import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    STATE_FILE,
    Identity,
    default_data_dir,
    is_enrolled,
    load_identity,
    save_identity,
)
from certs import write_secret_file

PEMS = {"key_pem": b"KEY\n", "cert_pem": b"CERT\n", "ca_pem": b"CA\n"}

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


def _identity(data_dir: Path, **overrides: str) -> Identity:
    fields = {
        "broker_url": "wss://support.isp.example:443",
        "contract_id": "C-0001",
        "serial": "1a2b3c",
        "ca_fingerprint": "AB:CD",
        "machine_name": "山田のPC",
    }
    fields.update(overrides)
    return Identity(data_dir=data_dir, **fields)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A permissive umask must not loosen the modes (they are set, not left to the umask)."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    identity = _identity(data_dir)
    assert load_identity(data_dir) is None
    assert not is_enrolled(data_dir)
    save_identity(identity, **PEMS)
    assert is_enrolled(data_dir)
    assert load_identity(data_dir) == identity
    assert identity.key_path.read_bytes() == b"KEY\n"
    assert identity.cert_path.read_bytes() == b"CERT\n"
    assert identity.ca_path.read_bytes() == b"CA\n"


def test_data_dir_is_not_stored_in_the_state_file(tmp_path: Path) -> None:
    """The directory can move: loading from the new place gives the new place."""
    save_identity(_identity(tmp_path / "old"), **PEMS)
    (tmp_path / "old").rename(tmp_path / "new")
    loaded = load_identity(tmp_path / "new")
    assert loaded is not None
    assert loaded.data_dir == tmp_path / "new"
    assert "old" not in (tmp_path / "new" / STATE_FILE).read_text("utf-8")


@pytest.mark.usefixtures("open_umask")
def test_modes(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    data_dir.mkdir(mode=0o777)
    os.chmod(data_dir, 0o777)  # noqa: S103 - loosened on purpose; save must tighten it
    save_identity(_identity(data_dir), **PEMS)
    assert _mode(data_dir) == 0o700
    names = sorted(p.name for p in data_dir.iterdir())
    assert names == sorted([KEY_FILE, CERT_FILE, CA_FILE, STATE_FILE])  # no temporary files left
    for name in names:
        assert _mode(data_dir / name) == 0o600, name


def test_state_file_is_written_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []

    def recording(path: Path, data: bytes, *, exclusive: bool = False) -> None:
        written.append(path.name)
        write_secret_file(path, data, exclusive=exclusive)

    monkeypatch.setattr(identity_module, "write_secret_file", recording)
    save_identity(_identity(tmp_path / "agent"), **PEMS)
    assert written[-1] == STATE_FILE
    assert sorted(written) == sorted([KEY_FILE, CERT_FILE, CA_FILE, STATE_FILE])


def test_data_dir_path_is_a_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    data_dir.write_bytes(b"in the way")
    with pytest.raises(OSError):  # noqa: PT011 - the OS decides which OSError
        save_identity(_identity(data_dir), **PEMS)
    assert not is_enrolled(data_dir)
    assert data_dir.read_bytes() == b"in the way"


def test_failed_re_enrollment_leaves_no_state_file(tmp_path: Path) -> None:
    """Re-enrolling over an old identity and failing midway must not look enrolled."""
    data_dir = tmp_path / "agent"
    save_identity(_identity(data_dir, serial="01"), **PEMS)
    assert is_enrolled(data_dir)
    # The certificate cannot be written: its path is now a non-empty directory.
    (data_dir / CERT_FILE).unlink()
    (data_dir / CERT_FILE).mkdir()
    (data_dir / CERT_FILE / "x").write_bytes(b"")
    with pytest.raises(OSError):  # noqa: PT011
        save_identity(_identity(data_dir, serial="02"), **{**PEMS, "key_pem": b"NEW KEY\n"})
    assert not is_enrolled(data_dir)
    assert load_identity(data_dir) is None
    assert not [p for p in data_dir.iterdir() if p.name.endswith(".tmp")]


def test_re_enrollment_replaces_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    save_identity(_identity(data_dir, serial="01"), **PEMS)
    save_identity(_identity(data_dir, serial="02"), key_pem=b"K2\n", cert_pem=b"C2\n", ca_pem=b"A2\n")
    loaded = load_identity(data_dir)
    assert loaded is not None
    assert loaded.serial == "02"
    assert loaded.key_path.read_bytes() == b"K2\n"


def test_load_tolerates_a_missing_machine_name(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    save_identity(_identity(data_dir), **PEMS)
    state = data_dir / STATE_FILE
    state.write_text(state.read_text("utf-8").replace('"machine_name"', '"ignored"'), "utf-8")
    loaded = load_identity(data_dir)
    assert loaded is not None
    assert loaded.machine_name == ""


def test_default_data_dir_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_DATA_DIR", str(tmp_path / "here"))
    assert default_data_dir() == tmp_path / "here"
    monkeypatch.delenv("AGENT_DATA_DIR")
    assert default_data_dir().name == "isp-remote-support-agent"
