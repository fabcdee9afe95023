"""Router model discovery (別紙5 (11)) against a fake Internet Gateway Device served on 127.0.0.1 only."""

from __future__ import annotations

import http.client
import http.server
import socket

import pytest

from agent.inventory.items import Item
from agent.inventory.router import (
    IGD_ST,
    RouterProbeError,
    allowed_location,
    build_msearch,
    discover,
    fetch_description,
    parse_description,
    parse_ssdp_response,
    probe_router,
)

from .gateway import DESCRIPTION, LOOPBACK, FakeGateway, ssdp_reply


def test_probe_reads_model_from_fake_gateway(gateway: FakeGateway) -> None:
    gateway.replies = lambda port: [ssdp_reply(f"http://{LOOPBACK}:{port}/rootDesc.xml")]
    result = probe_router(target=gateway.target, timeout=0.5)
    assert result.item is Item.ROUTER
    assert result.available, result.reason
    assert result.value == {
        "model": {
            "manufacturer": "NEC Platforms, Ltd.",
            "model_name": "WX3000HP",
            "model_number": "1.4.2",
            "friendly_name": "Aterm WX3000HP",
        }
    }
    assert gateway.requests == ["/rootDesc.xml"]
    search = gateway.searches[0].decode("ascii")
    assert search.startswith("M-SEARCH * HTTP/1.1\r\n")
    assert f"ST: {IGD_ST}\r\n" in search
    assert 'MAN: "ssdp:discover"' in search


def test_duplicate_answers_are_folded(gateway: FakeGateway) -> None:
    gateway.replies = lambda port: [ssdp_reply(f"http://{LOOPBACK}:{port}/rootDesc.xml")] * 3
    found = discover(target=gateway.target, timeout=0.5)
    assert len(found) == 1
    assert found[0].responder == LOOPBACK
    assert found[0].server == "Linux/4.4 UPnP/1.0 Aterm/1.4.2"


@pytest.mark.parametrize(
    "location",
    [
        "http://192.0.2.1:{port}/rootDesc.xml",  # another host (TEST-NET): never contacted
        "http://router.invalid:{port}/rootDesc.xml",  # a hostname: resolving could lead anywhere
        "https://127.0.0.1:{port}/rootDesc.xml",  # not plain http
        "http://user:pw@127.0.0.1:{port}/rootDesc.xml",  # userinfo
        "file:///etc/passwd",
    ],
)
def test_location_not_on_responder_is_not_fetched(
    gateway: FakeGateway, location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(self: http.client.HTTPConnection) -> None:
        raise AssertionError(f"connection attempted to {self.host}:{self.port}")

    monkeypatch.setattr(http.client.HTTPConnection, "connect", forbidden)
    gateway.replies = lambda port: [ssdp_reply(location.format(port=port))]
    result = probe_router(target=gateway.target, timeout=0.5)
    assert not result.available
    assert result.reason is not None
    assert "not fetched" in result.reason
    assert gateway.requests == []


def test_oversize_description_is_rejected(gateway: FakeGateway) -> None:
    gateway.body = DESCRIPTION + b"<!--" + b"x" * 70_000 + b"-->"
    gateway.replies = lambda port: [ssdp_reply(f"http://{LOOPBACK}:{port}/rootDesc.xml")]
    result = probe_router(target=gateway.target, timeout=0.5)
    assert not result.available
    assert result.reason is not None
    assert "65536-byte limit" in result.reason


def test_garbage_answers_are_ignored(gateway: FakeGateway) -> None:
    gateway.replies = lambda port: [
        b"\xff\xfe\x00garbage",
        b"NOTIFY * HTTP/1.1\r\nLOCATION: http://127.0.0.1/\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:MediaServer:1\r\nLOCATION: http://127.0.0.1/\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nST: " + IGD_ST.encode() + b"\r\n\r\n",  # no LOCATION
        b"",
        ssdp_reply(f"http://{LOOPBACK}:{port}/rootDesc.xml"),
    ]
    result = probe_router(target=gateway.target, timeout=0.5)
    assert result.available, result.reason
    assert gateway.requests == ["/rootDesc.xml"]


def test_only_garbage_means_unavailable(gateway: FakeGateway) -> None:
    gateway.replies = lambda port: [b"garbage", b"HTTP/1.1 404 Not Found\r\n\r\n"]
    result = probe_router(target=gateway.target, timeout=0.3)
    assert not result.available
    assert result.reason is not None
    assert "no UPnP Internet Gateway Device answered" in result.reason


def test_no_answer_at_all_is_unavailable_in_time() -> None:
    # A closed UDP port on 127.0.0.1: ICMP unreachable or silence, either way no answer.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    result = probe_router(target=(LOOPBACK, port), timeout=0.3)
    assert not result.available
    assert result.reason is not None
    assert "0.3 s" in result.reason


def test_description_with_doctype_is_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><root><device/></root>'
    )
    with pytest.raises(RouterProbeError, match="DTD"):
        parse_description(bomb)
    external = b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:1/x.dtd"><root/>'
    with pytest.raises(RouterProbeError, match="DTD"):
        parse_description(external)


def test_description_errors() -> None:
    with pytest.raises(RouterProbeError, match="not well-formed"):
        parse_description(b"<root><device>")
    with pytest.raises(RouterProbeError, match="no root device"):
        parse_description(b"<root xmlns='urn:schemas-upnp-org:device-1-0'/>")
    plain = parse_description(b"<root><device><modelName>  RT-500KI  </modelName></device></root>")
    assert plain.model_name == "RT-500KI"
    assert plain.manufacturer is None


def test_fetch_refuses_before_connecting() -> None:
    with pytest.raises(RouterProbeError, match="not fetched"):
        fetch_description("http://10.0.0.1/desc.xml", "192.168.1.1")


def test_helpers() -> None:
    assert allowed_location("http://192.168.1.1:5000/desc.xml?x=1", "192.168.1.1") == (
        "192.168.1.1",
        5000,
        "/desc.xml?x=1",
    )
    assert allowed_location("http://192.168.1.1", "192.168.1.1") == ("192.168.1.1", 80, "/")
    assert allowed_location("http://192.168.1.1:99999/", "192.168.1.1") is None
    assert allowed_location("http://192.168.1.2/", "192.168.1.1") is None
    assert build_msearch(("239.255.255.250", 1900)).startswith(
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"
    )
    reply = parse_ssdp_response(
        b"HTTP/1.1 200 OK\nst: " + IGD_ST.encode() + b"\nLocation: http://1.2.3.4/\n\n", "1.2.3.4"
    )
    assert reply is not None
    assert reply.location == "http://1.2.3.4/"
