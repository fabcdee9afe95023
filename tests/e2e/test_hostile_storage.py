"""Enrollment when the broker's disk is full (issue 12, item 10): a real ENOSPC on a small tmpfs
holding the broker's data dir. The agent is told ``storage_unavailable`` with an honest message
(never "Cannot reach the broker"), nothing is stored, ``/healthz`` stays up, and once space is back
the same token enrolls and another agent and operator get a session going."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpdesk import HelpdeskClient, HelpdeskError
from tests.e2e.conftest import ALWAYS_OPEN
from tests.helpers import (
    PYTHON,
    BrokerProcess,
    OperatorAccount,
    add_operator,
    enrolled_agent,
    login,
    run_agent,
    start_support,
)
from tests.wire.rawws import TEXT, RawWebSocket, frame
from tests.wire.serving import assert_still_serves, client_context, enrolled_identity


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


# -- a database locked by another process (item 7) -------------------------------------------------------

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
print("released", flush=True)
"""


async def _healthz_ms(broker: BrokerProcess) -> float:
    started = time.perf_counter()
    assert await _healthz(broker) == "HTTP/1.1 200 OK"
    return (time.perf_counter() - started) * 1000


async def _ping_ms(ws: RawWebSocket, n: int) -> float:
    started = time.perf_counter()
    await ws.send(frame(TEXT, json.dumps({"type": "ping", "id": f"p{n}", "time": 1.0}).encode()))
    while True:
        answer = json.loads(await ws.recv_json_text(timeout=30))
        if answer["type"] == "pong" and answer["id"] == f"p{n}":
            return (time.perf_counter() - started) * 1000


async def _login_outcome(broker: BrokerProcess, account: OperatorAccount) -> str:
    ca_pem = (broker.data_dir / "ca.pem").read_bytes()
    async with HelpdeskClient(broker.url, ca_pem=ca_pem) as op:
        try:
            await op.login(account.name, account.password, account.totp())
        except HelpdeskError as exc:
            return exc.code
        return "logged in"


async def test_a_locked_database_does_not_stall_the_broker(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "broker", extra_args=ALWAYS_OPEN).start()
    try:
        identities = [await enrolled_identity(broker, tmp_path, f"C-LOCK-{i}") for i in range(2)]
        account = add_operator(broker, "lockop")
        second = add_operator(broker, "lockop2")
        ca_pem = (broker.data_dir / "ca.pem").read_bytes()
        async with HelpdeskClient(broker.url, ca_pem=ca_pem) as op:
            await login(op, account)
        # A subscriber waits with a support code; an operator logged in before the lock claims it
        # during the lock.
        enrolled_agent(broker, tmp_path / "support", "C-LOCK-S")
        support = start_support(tmp_path / "support", "--test-pattern")
        code = support.support_code()
        claimer = HelpdeskClient(broker.url, ca_pem=ca_pem)
        await claimer.__aenter__()
        await login(claimer, add_operator(broker, "lockclaim"))
        operator = await RawWebSocket.open(broker.port, "/operator", client_context(broker))
        await operator.send(
            frame(TEXT, json.dumps({"type": "hello", "versions": [1], "role": "operator"}).encode())
        )
        assert json.loads(await operator.recv_json_text())["type"] == "hello"
        await _ping_ms(operator, 0)

        locker = subprocess.Popen(
            [PYTHON, "-c", LOCKER, str(broker.data_dir / "broker.sqlite3"), "15"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert locker.stdout is not None
            assert locker.stdout.readline().strip() == "locked"
            held_until = time.monotonic() + 14
            # Agents connect and leave while the lock is held: the broker records that (a write), but
            # nobody may wait for it.
            contexts = [client_context(broker, cert=i.cert_path, key=i.key_path) for i in identities]
            agents = []
            for ctx in contexts:
                agent = await RawWebSocket.open(broker.port, "/agent", ctx)
                await agent.send(
                    frame(TEXT, json.dumps({"type": "hello", "versions": [1], "role": "agent"}).encode())
                )
                assert json.loads(await agent.recv_json_text())["type"] == "hello"
                agents.append(agent)
            agents.pop().abort()
            # An operator logs in while the lock is held: password and TOTP are checked, then the
            # login is written (a durable write, which waits for the lock): the loop goes on meanwhile.
            logging_in = asyncio.create_task(_login_outcome(broker, second))
            claiming = asyncio.create_task(claimer.claim(code=code))
            pings, checks = [], []
            n = 1
            while time.monotonic() < held_until:
                pings.append(await _ping_ms(operator, n))
                checks.append(await _healthz_ms(broker))
                n += 1
                await asyncio.sleep(0.2)
            assert locker.poll() is None, "the lock was released early"
            # The claim is answered while the lock is still held (its audit entries wait, not it).
            assert claiming.done(), "the claim waited for the lock"
            assert claiming.result().session_id
            support.wait_for("View your screen")  # the subscriber is asked, as always
        finally:
            locker.wait(30)
            support.stop()
            await claimer.__aexit__(None, None, None)
        # The login waited up to the busy timeout (10 s) and was then refused, or went through once
        # the lock was released: an answer either way, never a hang.
        outcome = await asyncio.wait_for(logging_in, 30)
        assert outcome in ("logged in", "internal"), outcome
        # The bound of the issue is 100 ms. The CI machine is shared (load above 4 on 2 cores while
        # this runs beside other tests), so single samples may be late for reasons of scheduling:
        # 95 % must meet the bound and none may stall (before, the stall was 10-20 s).
        for what, samples in (("operator ping", pings), ("/healthz", checks)):
            median = sorted(samples)[len(samples) // 2]
            print(f"{what} while locked: median {median:.1f} ms, max {max(samples):.1f} ms")
            late = sorted(samples)[int(len(samples) * 0.95)]
            assert late < 100, f"{what}: 95th percentile {late:.0f} ms: {samples}"
            assert max(samples) < 1000, f"{what} stalled for {max(samples):.0f} ms: {samples}"
        operator.abort()
        for agent in agents:
            agent.abort()
        await assert_still_serves(broker, tmp_path)
    finally:
        broker.stop()
