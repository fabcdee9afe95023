"""A real broker process under hostile WebSocket clients (issue 12, items 1-5), over real TLS on
127.0.0.1, with hand-made frames (tests/wire/rawws.py). Each test ends by checking that a
well-behaved agent and operator still get a session going on the same broker."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ALWAYS_OPEN
from tests.helpers import BrokerProcess
from tests.wire.rawws import BINARY, CONT, PING, TEXT, RawWebSocket, frame
from tests.wire.serving import assert_still_serves, client_context, enrolled_identity

HELLO = {"type": "hello", "versions": [1]}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("hostile") / "broker", extra_args=ALWAYS_OPEN).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clients")


@pytest.fixture(scope="module")
def agent_ctx(broker: BrokerProcess, work: Path) -> ssl.SSLContext:
    identity = asyncio.run(enrolled_identity(broker, work, "C-HOSTILE"))
    return client_context(broker, cert=identity.cert_path, key=identity.key_path)


def _hello(role: str, **extra: object) -> bytes:
    return json.dumps({**HELLO, "role": role, **extra}, ensure_ascii=False).encode()


async def _open(broker: BrokerProcess, path: str, ctx: ssl.SSLContext | None = None) -> RawWebSocket:
    return await RawWebSocket.open(broker.port, path, ctx or client_context(broker))


def _ctx_for(path: str, broker: BrokerProcess, agent_ctx: ssl.SSLContext) -> ssl.SSLContext:
    return agent_ctx if path == "/agent" else client_context(broker)


def _role(path: str) -> str:
    return path.lstrip("/")


def _rss(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux ≥ 4.0)


# -- 1. invalid UTF-8 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/enroll", "/operator", "/agent"])
@pytest.mark.parametrize("after_hello", [False, True])
async def test_invalid_utf8_closes_with_1007_on_every_path(
    broker: BrokerProcess, agent_ctx: ssl.SSLContext, work: Path, path: str, after_hello: bool
) -> None:
    ws = await _open(broker, path, _ctx_for(path, broker, agent_ctx))
    if after_hello:
        await ws.send(frame(TEXT, _hello(_role(path))))
        assert json.loads(await ws.recv_json_text())["type"] == "hello"
    await ws.send(frame(TEXT, b'{"type": "ping", "id": "\xff\xfe"}'))
    assert await ws.closed_with() == 1007
    ws.abort()
    assert "Fatal error" not in (broker.output.text() if broker.output else "")
    assert "UnicodeDecodeError" not in (broker.output.text() if broker.output else "")
    if path == "/agent" and after_hello:
        await assert_still_serves(broker, work)


# -- 2. fragmented messages ------------------------------------------------------------------------------


async def test_fragmented_messages_are_reassembled_even_inside_a_character(
    broker: BrokerProcess, work: Path
) -> None:
    ws = await _open(broker, "/operator")
    hello = _hello("operator", software="テスト端末")  # multi-byte characters
    cut = hello.index("ス".encode()) + 1  # inside the 3-byte sequence of ス
    await ws.send(frame(TEXT, hello[:5], fin=False))
    await ws.send(frame(CONT, hello[5:cut], fin=False))
    await ws.send(frame(PING, b"between fragments"))  # a control frame may come in between (§5.4)
    await ws.send(frame(CONT, hello[cut:], fin=True))
    assert json.loads(await ws.recv_json_text())["type"] == "hello"
    # The request after it, in two fragments, is answered as one message.
    queue = json.dumps({"type": "queue_list", "id": "q1"}).encode()
    await ws.send(frame(TEXT, queue[:7], fin=False) + frame(CONT, queue[7:]))
    answer = json.loads(await ws.recv_json_text())
    assert (answer["type"], answer["id"], answer["code"]) == ("error", "q1", "auth_required")
    ws.abort()
    await assert_still_serves(broker, work)


async def test_invalid_utf8_split_across_fragments_closes_with_1007(broker: BrokerProcess) -> None:
    ws = await _open(broker, "/enroll")
    await ws.send(frame(TEXT, b'{"type": "hello", "role": "\xe3\x83', fin=False))
    await ws.send(frame(CONT, b'\x41"}', fin=True))  # ã followed by a non-continuation byte
    assert await ws.closed_with() == 1007
    ws.abort()


# -- 3. binary frames where only text belongs ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/operator", "/enroll"])
async def test_binary_frames_on_text_paths_get_an_error_and_count(
    broker: BrokerProcess, work: Path, path: str
) -> None:
    ws = await _open(broker, path)
    await ws.send(frame(TEXT, _hello(_role(path))))
    assert json.loads(await ws.recv_json_text())["type"] == "hello"
    for _ in range(9):
        await ws.send(frame(BINARY, b"\x00\x01 not for this path"))
        error = json.loads(await ws.recv_json_text())
        assert (error["type"], error["code"]) == ("error", "unexpected_message")
    await ws.send(frame(BINARY, b"the tenth"))
    json.loads(await ws.recv_json_text())  # its error, then the policy close
    assert await ws.closed_with() == 1008
    ws.abort()
    if path == "/enroll":
        await assert_still_serves(broker, work)


# -- 4. oversize frames before authentication ------------------------------------------------------------


async def test_oversize_text_before_authentication_is_refused_from_the_header(
    broker: BrokerProcess, agent_ctx: ssl.SSLContext, work: Path
) -> None:
    assert broker.proc is not None
    pid = broker.proc.pid
    await asyncio.sleep(0.5)
    before = _rss(pid)
    _reset_peak(pid)
    # Each announces 8 MiB - 10 bytes and sends the first half of them: the old listener buffered
    # every byte until the frame was complete (~160 MiB for 20), ours refuses from the header.
    begun = frame(TEXT, b"x" * (4 * MiB), length=8 * MiB - 10)
    conns = [await _open(broker, path) for path in ["/enroll", "/operator"] * 10]

    async def attack(ws: RawWebSocket) -> int | None:
        ws.writer.write(begun)
        code = await ws.closed_with()
        ws.abort()
        return code

    codes = await asyncio.gather(*(attack(ws) for ws in conns))
    await asyncio.sleep(0.5)
    growth = _rss(pid, "VmHWM") - before
    print(f"oversize frames: broker peak RSS grew {growth / MiB:.2f} MiB for 20 connections")
    assert codes == [1009] * 20
    assert growth < 20 * MiB, f"broker grew by {growth / MiB:.1f} MiB for 20 connections"

    # An admitted agent may still send a large binary frame (a screen update) and carry on.
    ws = await _open(broker, "/agent", agent_ctx)
    await ws.send(frame(TEXT, _hello("agent")))
    assert json.loads(await ws.recv_json_text())["type"] == "hello"
    await ws.send(frame(BINARY, b"\x00" * (2 * MiB)))
    await ws.send(frame(TEXT, json.dumps({"type": "ping", "id": "p", "time": 1.0}).encode()))
    while (reply := json.loads(await ws.recv_json_text()))["type"] != "pong":
        assert reply["type"] == "error", reply
    ws.abort()
    await assert_still_serves(broker, work)


# -- 5. PING flood from a peer that never reads ----------------------------------------------------------


async def test_ping_flood_from_a_peer_that_never_reads_stays_bounded(
    broker: BrokerProcess, work: Path
) -> None:
    assert broker.proc is not None
    pid = broker.proc.pid
    conns = [
        await RawWebSocket.open(broker.port, path, client_context(broker), read_limit=1024)
        for path in ("/enroll", "/operator")
    ]
    await asyncio.sleep(0.5)
    before = _rss(pid)
    _reset_peak(pid)
    chunk = b"".join(frame(PING, b"p" * 125) for _ in range(2000))  # ~262 KiB of PINGs, 2000 PONGs
    limit = 48 * MiB

    async def flood(ws: RawWebSocket) -> int:
        sent = 0
        while sent < limit:
            ws.writer.write(chunk)
            try:
                await asyncio.wait_for(ws.writer.drain(), 3)
            except TimeoutError:
                break  # the broker stopped reading: what we want
            sent += len(chunk)
        return sent

    sent = await asyncio.gather(*(flood(ws) for ws in conns))
    growth = _rss(pid, "VmHWM") - before
    print(
        f"PING flood: {sum(sent) / MiB:.1f} MiB sent on {len(conns)} connections, RSS +{growth / MiB:.2f} MiB"
    )
    for ws in conns:
        ws.abort()
    assert growth < 4 * MiB * len(conns), (
        f"broker grew by {growth / MiB:.1f} MiB after {sum(sent) / MiB:.1f} MiB of PINGs"
    )
    assert min(sent) < limit, "the broker never stopped reading"
    await assert_still_serves(broker, work)
