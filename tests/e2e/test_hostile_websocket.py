"""WebSocket conformance of the broker's listener: our own tests for the categories of the Autobahn
test suite that apply to a server (framing, pings/pongs, reserved bits and opcodes, fragmentation,
UTF-8 handling, close handshake and close codes), with hand-made frames over real TLS against a real
broker process. Each group ends by checking that another agent and operator still get a session."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ALWAYS_OPEN
from tests.helpers import BrokerProcess
from tests.wire.rawws import BINARY, CLOSE, CONT, PING, PONG, TEXT, RawWebSocket, close_payload, frame
from tests.wire.serving import assert_still_serves, client_context

PROTOCOL_ERROR, INVALID_DATA, TOO_BIG = 1002, 1007, 1009


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("ws") / "broker", extra_args=ALWAYS_OPEN).start()
    try:
        yield proc
    finally:
        proc.stop()


async def _opened(broker: BrokerProcess) -> RawWebSocket:
    """An /operator connection after the hello exchange."""
    ws = await RawWebSocket.open(broker.port, "/operator", client_context(broker))
    await ws.send(frame(TEXT, json.dumps({"type": "hello", "versions": [1], "role": "operator"}).encode()))
    assert json.loads(await ws.recv_json_text())["type"] == "hello"
    return ws


def _ping_message(pad: int = 0, ident: str = "p") -> bytes:
    return json.dumps({"type": "ping", "id": ident, "time": 1.0}).encode() + b" " * pad


async def _pong(ws: RawWebSocket, ident: str = "p") -> None:
    answer = json.loads(await ws.recv_json_text())
    assert (answer["type"], answer["id"]) == ("pong", ident), answer


async def _closes_with(broker: BrokerProcess, data: bytes, code: int) -> None:
    ws = await _opened(broker)
    await ws.send(data)
    assert await ws.closed_with() == code, data[:40]
    ws.abort()


# -- framing (Autobahn 1, 2, 3, 4) -------------------------------------------------------------------


async def test_frames_of_every_length_encoding_are_read(broker: BrokerProcess, tmp_path: Path) -> None:
    ws = await _opened(broker)
    base = len(_ping_message())
    for total in (base, 125, 126, 127, 65535, 65536):  # 7-bit, 16-bit and the largest accepted
        await ws.send(frame(TEXT, _ping_message(total - base)))
        await _pong(ws)
    ws.abort()
    await _closes_with(broker, frame(TEXT, _ping_message(65537 - base)), TOO_BIG)
    await assert_still_serves(broker, tmp_path)


async def test_pings_and_pongs(broker: BrokerProcess, tmp_path: Path) -> None:
    ws = await _opened(broker)
    for payload in (b"", b"hello", bytes(range(125))):
        await ws.send(frame(PING, payload))
        got = await ws.recv()
        assert (got.opcode, got.payload) == (PONG, payload)
    await ws.send(frame(PONG, b"unsolicited"))  # ignored (RFC 6455 §5.5.3)
    await ws.send(frame(TEXT, _ping_message()))
    await _pong(ws)
    ws.abort()
    await _closes_with(broker, frame(PING, b"x" * 126), PROTOCOL_ERROR)  # control frames ≤ 125 bytes
    await _closes_with(broker, frame(PING, b"frag", fin=False), PROTOCOL_ERROR)  # never fragmented
    await _closes_with(broker, frame(CLOSE, close_payload(1000), fin=False), PROTOCOL_ERROR)
    await assert_still_serves(broker, tmp_path)


async def test_reserved_bits_opcodes_and_unmasked_frames_fail_the_connection(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    for rsv in (1, 2, 3, 4, 5, 6, 7):  # no extension was negotiated
        await _closes_with(broker, frame(TEXT, _ping_message(), rsv=rsv), PROTOCOL_ERROR)
    for opcode in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
        await _closes_with(broker, frame(opcode, b"reserved"), PROTOCOL_ERROR)
    await _closes_with(broker, frame(TEXT, _ping_message(), mask=False), PROTOCOL_ERROR)
    await _closes_with(broker, frame(PING, b"", mask=False), PROTOCOL_ERROR)
    # After a good frame in the same write, the bad one still fails the connection.
    ws = await _opened(broker)
    await ws.send(frame(TEXT, _ping_message()) + frame(TEXT, b"{}", rsv=4))
    assert await ws.closed_with() == PROTOCOL_ERROR
    ws.abort()
    await assert_still_serves(broker, tmp_path)


# -- fragmentation (Autobahn 5) --------------------------------------------------------------------------


async def test_fragmentation(broker: BrokerProcess, tmp_path: Path) -> None:
    ws = await _opened(broker)
    message = _ping_message(ident="f1")
    # one byte per fragment, with empty fragments and pings in between
    await ws.send(frame(TEXT, b"", fin=False))
    for i, byte in enumerate(message):
        await ws.send(frame(CONT, bytes([byte]), fin=False))
        if i % 10 == 0:
            await ws.send(frame(PING, b"%d" % i))
    await ws.send(frame(CONT, b"", fin=True))
    pongs = 0
    while True:
        got = await ws.recv()
        if got.opcode == PONG:
            pongs += 1
            continue
        assert got.opcode == TEXT
        assert json.loads(got.payload)["id"] == "f1"
        break
    assert pongs == len(range(0, len(message), 10))
    ws.abort()
    # continuation with nothing to continue; a new message inside a fragmented one
    await _closes_with(broker, frame(CONT, b"x", fin=True), PROTOCOL_ERROR)
    await _closes_with(broker, frame(CONT, b"x", fin=False), PROTOCOL_ERROR)
    await _closes_with(broker, frame(TEXT, b"{", fin=False) + frame(TEXT, b"}"), PROTOCOL_ERROR)
    await _closes_with(broker, frame(TEXT, b"{", fin=False) + frame(BINARY, b"}"), PROTOCOL_ERROR)
    # a fragmented message larger than the limit in total, though each fragment is small
    await _closes_with(
        broker,
        frame(TEXT, b" " * 40_000, fin=False) + frame(CONT, b" " * 40_000, fin=True),
        TOO_BIG,
    )
    await assert_still_serves(broker, tmp_path)


# -- UTF-8 (Autobahn 6) ------------------------------------------------------------------------------------

VALID_UTF8 = ["κόσμε", "日本語のテキスト", "\U0001f600 emoji", "\u07ff\u0800\uffff\U00010000\U0010ffff"]
INVALID_UTF8 = [
    b"\xc0\x80",  # overlong NUL
    b"\xe0\x80\xaf",  # overlong '/'
    b"\xed\xa0\x80",  # UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xfe\xff",  # never valid bytes
    b"\x80",  # lone continuation byte
    b"\xe6\x97",  # truncated at the end of the message
]


async def test_utf8_is_validated_across_frames(broker: BrokerProcess, tmp_path: Path) -> None:
    ws = await _opened(broker)
    for i, text in enumerate(VALID_UTF8):
        chat_id = f"u{i}"
        data = json.dumps({"type": "ping", "id": chat_id, "time": 1.0, "x": text}, ensure_ascii=False)
        raw = data.encode()
        # an unknown field: refused by the schema, which proves the text arrived whole and decoded
        await ws.send(
            frame(TEXT, raw[:3], fin=False) + frame(CONT, raw[3:-2], fin=False) + frame(CONT, raw[-2:])
        )
        answer = json.loads(await ws.recv_json_text())
        assert (answer["type"], answer["code"]) == ("error", "invalid_field"), answer
    ws.abort()
    for bad in INVALID_UTF8:
        payload = b'{"type": "ping", "id": "' + bad + b'"}' if bad != b"\xe6\x97" else b'{"a": 1} ' + bad
        await _closes_with(broker, frame(TEXT, payload), INVALID_DATA)
        half = len(payload) // 2
        await _closes_with(
            broker, frame(TEXT, payload[:half], fin=False) + frame(CONT, payload[half:]), INVALID_DATA
        )
    await assert_still_serves(broker, tmp_path)


# -- close handshake and codes (Autobahn 7) -------------------------------------------------------------


async def test_close_handshake_and_codes(broker: BrokerProcess, tmp_path: Path) -> None:
    # An empty close is answered with an empty close (1005 = no status), then the connection ends.
    await _closes_with(broker, frame(CLOSE, b""), 1005)
    for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999):
        await _closes_with(broker, frame(CLOSE, close_payload(code, b"bye")), code)  # echoed
    await _closes_with(broker, frame(CLOSE, close_payload(1000, "さようなら".encode())), 1000)
    await _closes_with(broker, frame(CLOSE, close_payload(1000, b"r" * 123)), 1000)  # 125 in all
    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
        await _closes_with(broker, frame(CLOSE, close_payload(code)), PROTOCOL_ERROR)
    await _closes_with(broker, frame(CLOSE, b"\x03"), PROTOCOL_ERROR)  # a 1-byte close payload
    await _closes_with(broker, frame(CLOSE, close_payload(1000, b"\xff\xfe")), INVALID_DATA)
    # Frames after a close are not answered.
    ws = await _opened(broker)
    await ws.send(frame(CLOSE, close_payload(1000)) + frame(TEXT, _ping_message()) + frame(PING, b"late"))
    got = await ws.recv()
    assert (got.opcode, got.close_code) == (CLOSE, 1000)
    assert await ws.closed_with(timeout=5) is None  # EOF: nothing else follows the close
    ws.abort()
    await assert_still_serves(broker, tmp_path)


async def test_the_broker_closing_with_a_reason_sends_a_valid_close(broker: BrokerProcess) -> None:
    ws = await _opened(broker)
    for _ in range(10):
        await ws.send(frame(TEXT, b"[]"))
    frames = []
    while (got := await ws.recv()).opcode != CLOSE:
        frames.append(got)
    code, reason = struct.unpack("!H", got.payload[:2])[0], got.payload[2:].decode()
    assert (code, reason) == (1008, "too_many_errors")
    assert len(frames) == 10
    ws.abort()
