"""``broker serve --max-unauthenticated-per-address N``: the per-address cap on connections that
have not authenticated (wire/gate.py) set from the command line, with its documented default; the
same for ``--max-handshakes N`` (the TLS handshakes under way at once, wire/slots.py)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from broker.cli import build_parser
from tests.e2e.conftest import ALWAYS_OPEN
from tests.helpers import PYTHON, ROOT, BrokerProcess, child_env
from tests.wire.serving import client_context
from wire.gate import DEFAULT_MAX_UNAUTHENTICATED
from wire.slots import DEFAULT_MAX_HANDSHAKES


def test_default_is_the_documented_cap() -> None:
    args = build_parser().parse_args(["serve"])
    assert args.max_unauthenticated_per_address == DEFAULT_MAX_UNAUTHENTICATED == 256
    args = build_parser().parse_args(["serve", "--max-unauthenticated-per-address", "0"])
    assert args.max_unauthenticated_per_address == 0  # no cap (BrokerConfig gets None)


@pytest.mark.parametrize("value", ["-1", "many", "2.5"])
def test_a_bad_value_is_refused_with_exit_2(value: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "broker",
            "--data-dir",
            str(tmp_path),
            "serve",
            "--max-unauthenticated-per-address",
            value,
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--max-unauthenticated-per-address" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "broker.sqlite3").exists()  # refused before anything was created


async def _tls_handshake(broker: BrokerProcess) -> None:
    _, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", broker.port, ssl=client_context(broker)), 10
    )
    writer.close()


async def test_the_flag_sets_the_cap_of_a_running_broker(tmp_path: Path) -> None:
    broker = BrokerProcess(
        tmp_path / "broker", extra_args=(*ALWAYS_OPEN, "--max-unauthenticated-per-address", "3")
    ).start()
    held: list[socket.socket] = []
    try:
        await _tls_handshake(broker)  # below the cap: served
        held = [socket.create_connection(("127.0.0.1", broker.port), timeout=10) for _ in range(3)]
        time.sleep(0.3)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            await _tls_handshake(broker)  # the fourth from this address: closed before TLS
        for sock in held:
            sock.close()
        held = []
        deadline = time.monotonic() + 10
        while True:  # the broker notices the closed ones and counts them out
            try:
                await _tls_handshake(broker)
                break
            except (ssl.SSLError, ConnectionError, OSError):
                assert time.monotonic() < deadline, "the cap did not free up"
                await asyncio.sleep(0.2)
    finally:
        for sock in held:
            sock.close()
        broker.stop()


def test_max_handshakes_default_is_the_documented_limit() -> None:
    assert build_parser().parse_args(["serve"]).max_handshakes == DEFAULT_MAX_HANDSHAKES == 256
    assert build_parser().parse_args(["serve", "--max-handshakes", "0"]).max_handshakes == 0  # no limit


async def test_max_handshakes_sets_the_slots_of_a_running_broker(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "broker", extra_args=(*ALWAYS_OPEN, "--max-handshakes", "1")).start()
    staller = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
    try:
        staller.sendall(b"\x16\x03\x01")  # a ClientHello begins, and stops: it holds the only slot
        await asyncio.sleep(0.5)
        waiting = asyncio.ensure_future(_tls_handshake(broker))
        await asyncio.sleep(1.5)
        assert not waiting.done()  # its handshake waits for the slot, no TLS work done yet
        staller.close()
        await asyncio.wait_for(waiting, 15)  # the slot came free: served
    finally:
        staller.close()
        broker.stop()


def test_tls_ticket_period_is_a_day_by_default_and_bounded_by_rfc_8446() -> None:
    parse = build_parser().parse_args
    assert parse(["serve"]).tls_ticket_period == 86_400.0
    assert parse(["serve", "--tls-ticket-period", "0"]).tls_ticket_period == 0.0  # per-process keys
    assert parse(["serve", "--tls-ticket-period", "604800"]).tls_ticket_period == 604_800.0
    for bad in ("604801", "0.5", "-1", "soon"):
        with pytest.raises(SystemExit) as exited:
            parse(["serve", "--tls-ticket-period", bad])
        assert exited.value.code == 2
