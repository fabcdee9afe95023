"""NATS servers for the cluster tests: the shared one on 127.0.0.1:4222, and private ones to kill.

The shared server is started before the session on this machine (``scripts/bootstrap --system``
runs ``scripts/nats``); no server is a failure, never a skip. Each test uses a subject prefix of its
own, so tests (and other users of the shared server) never see each other's signals.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SHARED_NATS_URL = os.environ.get("BROKER_TEST_NATS", "nats://127.0.0.1:4222")


def unique_prefix() -> str:
    return f"t{secrets.token_hex(4)}.broker"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def require_shared_nats() -> str:
    host_port = SHARED_NATS_URL.rsplit("//", 1)[-1]
    port = int(host_port.rsplit(":", 1)[-1])
    if not port_answers(port):
        pytest.fail(
            f"no NATS server answers at {SHARED_NATS_URL}; start it (scripts/bootstrap --system)",
            pytrace=False,
        )
    return SHARED_NATS_URL


class PrivateNats:
    """A nats-server of our own on a free port, to stop and start again (Debian's nats-server)."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            pytest.fail(
                "nats-server is not installed (scripts/bootstrap --system installs it)", pytrace=False
            )
        self.binary = binary
        self.port = port or free_port()
        self.log = log_dir / f"nats-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-l", str(self.log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not port_answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nats-server on port {self.port} did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
