"""The accept loop at the open-file limit (wire.listener), in a child process whose RLIMIT_NOFILE is
lowered to a few hundred: real sockets on 127.0.0.1, the real limit, the real EMFILE."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import closed_by_server

ROOT = Path(__file__).resolve().parents[2]

# The child: listens with wire.listener under a soft limit of LIMIT descriptors, keeps every
# connection it is given, prints its port, then on "report" prints what it saw and exits.
CHILD = textwrap.dedent(
    """
    import asyncio, json, logging, resource, sys
    from wire import listener

    LIMIT, RESERVE = int(sys.argv[1]), (None if sys.argv[2] == "none" else int(sys.argv[2]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")

    class Keep(asyncio.Protocol):
        held = []
        def connection_made(self, transport):
            Keep.held.append(transport)
        def connection_lost(self, exc):
            pass

    async def main():
        loop = asyncio.get_running_loop()
        full = []
        lst = listener.Listener(
            loop, listener.bind("127.0.0.1", 0, backlog=512, reuse_port=False), Keep,
            fd_reserve=RESERVE, on_full=lambda: full.append(1), retry_delay=0.5,
        )
        lst.start()
        print(json.dumps({"port": lst.port, "ceiling": lst.ceiling}), flush=True)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while (line := (await reader.readline()).decode().strip()) != "report":
            if line == "drop":  # let go of half the connections held
                for transport in Keep.held[: len(Keep.held) // 2]:
                    transport.abort()
                del Keep.held[: len(Keep.held) // 2]
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        report = {"held": len(Keep.held), "full": len(full), "refused": lst.refused_full}
        print(json.dumps(report), flush=True)
        lst.close()

    asyncio.run(main())
    """
)

LIMIT = 200


def _child(reserve: int | None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(LIMIT), "none" if reserve is None else str(reserve)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _line(proc: subprocess.Popen[str]) -> dict[str, int | None]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else ""
    return dict(json.loads(line))


def _connect_many(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    return socks


def _finish(proc: subprocess.Popen[str], command: str = "report") -> tuple[dict[str, int | None], str]:
    assert proc.stdin is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    report = _line(proc)
    proc.wait(timeout=10)
    assert proc.stderr is not None
    return report, proc.stderr.read()


def test_connections_past_the_ceiling_are_reset_at_once_and_the_process_keeps_serving() -> None:
    proc = _child(reserve=50)
    socks: list[socket.socket] = []
    try:
        start = _line(proc)
        port = start["port"]
        assert port is not None
        assert start["ceiling"] == LIMIT - 50
        socks = _connect_many(port, 180)  # more than the ceiling leaves room for
        refused = closed_by_server(socks, wait=0.5)
        kept = len(socks) - len(refused)
        # Every descriptor below the ceiling is used (the child's own few + the kept ones), none above.
        assert 120 <= kept < LIMIT - 50, kept
        assert len(refused) == len(socks) - kept
        # Still serving: once connections go away, new ones are taken again.
        for s in refused:
            s.close()
        assert proc.stdin is not None
        proc.stdin.write("drop\n")
        proc.stdin.flush()
        time.sleep(0.5)
        again = _connect_many(port, 20)
        assert closed_by_server(again, wait=0.5) == []
        socks += again
        report, stderr = _finish(proc)
    finally:
        for s in socks:
            s.close()
        proc.kill()
    assert report["refused"] == report["full"] == len(refused)  # each one reported (the metric)
    assert "Traceback" not in stderr
    assert stderr.count("refusing new connections") == 1, stderr  # one line, not one per refusal


def test_without_a_ceiling_emfile_pauses_accepting_with_one_line_not_a_traceback_per_attempt() -> None:
    proc = _child(reserve=None)
    socks: list[socket.socket] = []
    try:
        start = _line(proc)
        port = start["port"]
        assert port is not None
        assert start["ceiling"] is None
        socks = _connect_many(port, 260)  # the kernel queues what the child cannot accept
        time.sleep(1.5)
        report, stderr = _finish(proc)
    finally:
        for s in socks:
            s.close()
        proc.kill()
    held = report["held"]
    assert held is not None
    assert held < LIMIT
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "accept() failed (EMFILE)" in line]
    assert 1 <= len(lines) <= 6, stderr  # about one per retry delay (0.5 s), not one per attempt


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_bind_listens_on_every_address_of_the_name(host: str) -> None:
    from wire import listener

    socks = listener.bind(host, 0, backlog=8, reuse_port=False)
    try:
        ports = {s.getsockname()[1] for s in socks}
        assert len(ports) == 1  # one port for all of them
        for s in socks:
            with socket.create_connection((s.getsockname()[0], s.getsockname()[1]), timeout=2):
                pass
    finally:
        for s in socks:
            s.close()
