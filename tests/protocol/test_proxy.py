"""The PROXY protocol v2 parser: real headers (as HAProxy writes them) for IPv4, IPv6 and LOCAL, bytes
arriving one at a time, the length limit, and hostile input refused with a stable code (fuzzed)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tests.fuzzing  # noqa: F401  (loads the hypothesis profile)
from protocol.errors import ErrorCode, RemoteProtocolError
from protocol.proxy import MAX_HEADER_BYTES, SIGNATURE, ProxyHeader, encode_proxy_header, parse_proxy_header

CODES = {ErrorCode.MALFORMED, ErrorCode.TOO_LARGE, ErrorCode.UNSUPPORTED_VERSION}

# A header captured from Debian's HAProxy 2.6 (send-proxy-v2) for a client 127.0.0.2:40000 that
# connected to the front door 127.0.0.1:8443, written out by hand from the specification's layout.
HAPROXY_IPV4 = (
    SIGNATURE + bytes([0x21, 0x11, 0x00, 0x0C, 127, 0, 0, 2, 127, 0, 0, 1]) + struct.pack(">HH", 40000, 8443)
)


def test_ipv4_header_then_the_client_s_bytes() -> None:
    data = HAPROXY_IPV4 + b"\x16\x03\x01 client hello"
    header = parse_proxy_header(data)
    assert header == ProxyHeader(
        command="proxy", source=("127.0.0.2", 40000), destination=("127.0.0.1", 8443), length=28
    )
    assert data[header.length :] == b"\x16\x03\x01 client hello"


def test_ipv6_and_ipv4_mapped_addresses() -> None:
    header = parse_proxy_header(encode_proxy_header(("2001:db8::7", 5555), ("2001:db8::1", 443)))
    assert header is not None
    assert (header.source, header.destination, header.length) == (
        ("2001:db8::7", 5555),
        ("2001:db8::1", 443),
        52,
    )
    mapped = parse_proxy_header(encode_proxy_header(("::ffff:203.0.113.9", 1), ("::ffff:10.0.0.1", 443)))
    assert mapped is not None
    assert mapped.source == ("203.0.113.9", 1)  # one client, one name, whichever family it came in


def test_local_command_means_use_the_connection_s_own_address() -> None:
    header = parse_proxy_header(encode_proxy_header(None) + b"GET /healthz")
    assert header == ProxyHeader(command="local", source=None, destination=None, length=16)
    # PROXY with an UNSPEC or UNIX family: also no address to take.
    unspec = SIGNATURE + bytes([0x21, 0x00, 0, 0])
    assert parse_proxy_header(unspec) == ProxyHeader(
        command="proxy", source=None, destination=None, length=16
    )
    unix = SIGNATURE + bytes([0x21, 0x31]) + struct.pack(">H", 216) + b"/a".ljust(108, b"\0") * 2
    header = parse_proxy_header(unix)
    assert header is not None
    assert (header.source, header.length) == (None, 232)


def test_tlvs_are_kept_in_order() -> None:
    data = encode_proxy_header(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=((0x04, b""), (0xE0, b"node-a")))
    header = parse_proxy_header(data)
    assert header is not None
    assert header.tlvs == ((0x04, b""), (0xE0, b"node-a"))
    assert header.length == len(data)


def test_bytes_arriving_one_at_a_time() -> None:
    data = HAPROXY_IPV4
    for end in range(len(data)):
        assert parse_proxy_header(data[:end]) is None
    assert parse_proxy_header(data) is not None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x16\x03\x01", ErrorCode.MALFORMED),  # a TLS ClientHello: a direct client, not a balancer
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", ErrorCode.MALFORMED),  # version 1 (text)
        (b"\r\n\r\n\x00\r\nQUIX", ErrorCode.MALFORMED),  # refused at the first wrong byte
        (SIGNATURE + bytes([0x11, 0x11, 0, 12]), ErrorCode.UNSUPPORTED_VERSION),
        (SIGNATURE + bytes([0x22, 0x11, 0, 12]), ErrorCode.MALFORMED),  # command 2
        (SIGNATURE + bytes([0x21, 0x12, 0, 12]) + bytes(12), ErrorCode.MALFORMED),  # datagram
        (SIGNATURE + bytes([0x21, 0x41, 0, 12]) + bytes(12), ErrorCode.MALFORMED),  # family 4
        (SIGNATURE + bytes([0x21, 0x21, 0, 12]) + bytes(12), ErrorCode.MALFORMED),  # IPv6 needs 36
        (SIGNATURE + bytes([0x21, 0x11, 0, 14]) + bytes(14), ErrorCode.MALFORMED),  # 2-byte TLV stub
        (SIGNATURE + bytes([0x21, 0x11, 0, 16]) + bytes(12) + b"\x01\x00\x09x", ErrorCode.MALFORMED),
        (SIGNATURE + bytes([0x21, 0x11, 0xFF, 0xFF]), ErrorCode.TOO_LARGE),  # before buffering 64 KiB
    ],
)
def test_hostile_headers_are_refused_with_a_stable_code(data: bytes, code: ErrorCode) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_proxy_header(data)
    assert caught.value.code is code


def test_the_length_limit_is_a_parameter() -> None:
    big = encode_proxy_header(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=((0xE1, b"x" * 600),))
    with pytest.raises(RemoteProtocolError) as caught:
        parse_proxy_header(big)
    assert caught.value.code is ErrorCode.TOO_LARGE
    header = parse_proxy_header(big, max_bytes=1024)
    assert header is not None
    assert header.length == len(big) > MAX_HEADER_BYTES


addresses = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535)),
    st.tuples(st.ip_addresses(v=6).map(str), st.integers(0, 65535)),
)


@given(st.binary(max_size=600))
def test_fuzz_any_bytes_parse_or_fail_with_a_stable_code(data: bytes) -> None:
    _parse_or_stable_error(data)
    _parse_or_stable_error(SIGNATURE + data)  # past the signature too


@given(
    addresses,
    st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=5),
    st.integers(0, 80),
    st.binary(max_size=8),
)
def test_fuzz_mutated_real_headers(
    source: tuple[str, int], tlvs: list[tuple[int, bytes]], flip: int, noise: bytes
) -> None:
    family_any = "::" if ":" in source[0] else "0.0.0.0"
    data = encode_proxy_header(source, (family_any, 443), tlvs=tuple(tlvs))
    header = parse_proxy_header(data + noise)
    assert header is not None
    assert header.length == len(data)
    assert header.tlvs == tuple(tlvs)
    mutated = bytearray(data)
    if flip < len(mutated):
        mutated[flip] ^= 0xFF
    _parse_or_stable_error(bytes(mutated))


def _parse_or_stable_error(data: bytes) -> None:
    code = None
    header = None
    try:
        header = parse_proxy_header(data)
    except RemoteProtocolError as exc:  # anything else fails the test
        code = exc.code
    assert code is None or code in CODES
    if header is not None:
        assert 16 <= header.length <= min(len(data), MAX_HEADER_BYTES)
