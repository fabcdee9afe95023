"""Enrollment when the broker's disk is full (issue 12, item 10): a real ENOSPC on a small tmpfs
holding the broker's data dir. The agent is told ``storage_unavailable`` with an honest message
(never "Cannot reach the broker"), nothing is stored, ``/healthz`` stays up, and once space is back
the same token enrolls and another agent and operator get a session going."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ALWAYS_OPEN
from tests.helpers import BrokerProcess, run_agent
from tests.wire.serving import assert_still_serves, client_context


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (root only; CI runs the tests as root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Fill the file system until the kernel says ENOSPC; returns the filler to delete later."""
    filler = disk / "filler"
    chunk = b"\0" * (256 * 1024)
    with filler.open("wb") as out:
        for _ in range(1024):  # at most 256 MiB, far above the disk's size
            try:
                out.write(chunk)
                out.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    # Small files and metadata blocks too: fill what is left byte by byte-ish.
    with contextlib.suppress(OSError), filler.open("ab") as out:
        for _ in range(4096):
            out.write(b"\0" * 512)
            out.flush()
    return filler


async def _healthz(broker: BrokerProcess) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port, ssl=client_context(broker))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    return head.decode().split("\r\n")[0]


async def test_enrollment_on_a_full_disk_is_refused_honestly(small_disk: Path, tmp_path: Path) -> None:
    broker = BrokerProcess(small_disk / "broker", extra_args=ALWAYS_OPEN).start()
    try:
        enroll_args = broker.add_subscriber("C-FULL")
        filler = _fill(small_disk)

        result = run_agent(tmp_path / "agent", *enroll_args, "--machine-name", "pc-full", stdin="y\n")
        assert result.returncode != 0
        assert "[storage_unavailable]" in result.stderr, result.stderr
        assert "could not save the enrollment" in result.stderr
        assert "Cannot reach" not in result.stderr + result.stdout
        assert not (tmp_path / "agent" / "agent.json").exists()  # written last, only when enrolled
        assert await _healthz(broker) == "HTTP/1.1 200 OK"

        filler.unlink()  # space is back: the same token works, nothing was half-stored
        again = run_agent(tmp_path / "agent", *enroll_args, "--machine-name", "pc-full", stdin="y\n")
        assert again.returncode == 0, again.stderr
        assert "Traceback" not in (broker.output.text() if broker.output else "")
        await assert_still_serves(broker, tmp_path)
    finally:
        broker.stop()
