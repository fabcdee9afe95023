"""scripts/nats (run by scripts/bootstrap --system): a NATS server answers afterwards, and running it
again when one answers does nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil
import pytest

from broker.cluster.nats_bus import NatsBus
from tests.helpers import ROOT

from .natsserver import free_port, port_answers, unique_prefix


def servers_on(port: int) -> list[psutil.Process]:
    """The nats-server processes listening on this test's own port (started by the script)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "nats-server" and "-p" in cmdline and str(port) in cmdline:
            found.append(proc)
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="scripts/nats starts a server only as root (as in CI)")
async def test_scripts_nats_starts_a_server_once(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "NATSTEST_PORT": str(port), "NATSTEST_LOG": str(tmp_path / "nats.log")}
    try:
        first = subprocess.run(
            [str(ROOT / "scripts" / "nats")], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert first.returncode == 0, first.stderr
        assert f"NATS answers on 127.0.0.1:{port}" in first.stdout
        assert port_answers(port)
        again = subprocess.run(
            [str(ROOT / "scripts" / "nats")], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert again.returncode == 0
        assert again.stdout == ""  # nothing to do
        assert len(servers_on(port)) == 1
        bus = NatsBus("n", url=f"nats://127.0.0.1:{port}", prefix=unique_prefix())
        await bus.start()
        try:
            assert await bus.wait_ready(5)
        finally:
            await bus.close()
    finally:
        for proc in servers_on(port):
            proc.kill()
            proc.wait(10)
