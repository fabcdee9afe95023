"""Router model discovery for 別紙5 (11) over UPnP (SSDP + device description).

Why UPnP: the subscriber's home router is the Internet Gateway Device; asking it "who are you" with an SSDP
M-SEARCH and reading its description XML gives manufacturer and model without logging in to it. The login
account and password of 別紙5 (11) are NOT read here or anywhere: only the subscriber types them in
(``RouterCredentials``), and the broker stores them encrypted (第30条, 第32条).

Why so defensive: every byte here comes from an unauthenticated device on the LAN. So:
- the description is fetched only if the LOCATION host is the very IP address that answered (no SSRF: a
  reply cannot make the agent fetch from another host, a hostname, or a non-HTTP URL);
- the body is capped (``MAX_DESCRIPTION_BYTES``) and the fetch has an overall deadline;
- the XML is parsed with DTDs and entities refused (no billion-laughs, no external entities);
- garbage datagrams are ignored, not fatal.

This is blocking socket code on purpose: the agent runs it in a worker thread off the event loop, and every
step has a timeout, so a plain function is simpler and easier to test than an asyncio protocol.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import time
import xml.parsers.expat
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from agent.errors import AgentError, AgentErrorCode
from agent.inventory.items import Item
from agent.inventory.model import ItemResult

__all__ = [
    "IGD_ST",
    "MAX_DESCRIPTION_BYTES",
    "SSDP_MULTICAST",
    "GatewayDescription",
    "RouterProbeError",
    "SsdpResponse",
    "allowed_location",
    "build_msearch",
    "discover",
    "fetch_description",
    "parse_description",
    "parse_ssdp_response",
    "probe_router",
]

SSDP_MULTICAST: Final = ("239.255.255.250", 1900)
IGD_ST: Final = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
_IGD_PREFIX: Final = "urn:schemas-upnp-org:device:InternetGatewayDevice:"
MAX_DESCRIPTION_BYTES: Final = 64 * 1024
_MAX_DATAGRAM: Final = 4096
_MAX_FIELD: Final = 256
_FIELDS: Final = {
    "manufacturer": "manufacturer",
    "modelName": "model_name",
    "modelNumber": "model_number",
    "friendlyName": "friendly_name",
}


class RouterProbeError(AgentError):
    """The gateway answered but its description could not be used; the message is shown as the reason."""

    code = AgentErrorCode.ROUTER_PROBE_FAILED


@dataclass(frozen=True, slots=True)
class SsdpResponse:
    """One usable SSDP answer: who answered, and where it says its description is."""

    responder: str
    location: str
    st: str
    server: str | None


@dataclass(frozen=True, slots=True)
class GatewayDescription:
    """The identifying fields of the root device in the description XML (UPnP Device Architecture 2.3)."""

    manufacturer: str | None
    model_name: str | None
    model_number: str | None
    friendly_name: str | None

    def to_wire(self) -> dict[str, str | None]:
        return {
            "manufacturer": self.manufacturer,
            "model_name": self.model_name,
            "model_number": self.model_number,
            "friendly_name": self.friendly_name,
        }


def build_msearch(target: tuple[str, int], *, mx: int = 2) -> bytes:
    """An M-SEARCH for the IGD (UPnP DA 1.1 §1.3.2); HOST names the target it is sent to."""
    host, port = target
    return (
        "M-SEARCH * HTTP/1.1\r\n"
        f"HOST: {host}:{port}\r\n"
        'MAN: "ssdp:discover"\r\n'
        f"MX: {mx}\r\n"
        f"ST: {IGD_ST}\r\n"
        "\r\n"
    ).encode("ascii")


def parse_ssdp_response(data: bytes, responder: str) -> SsdpResponse | None:
    """A 200 answer for an IGD with a LOCATION; anything else (NOTIFY, other ST, garbage) gives None."""
    try:
        text = data[:_MAX_DATAGRAM].decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    status = lines[0].split()
    if len(status) < 2 or not status[0].upper().startswith("HTTP/1.") or status[1] != "200":
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    st = headers.get("st", "")
    location = headers.get("location", "")
    if not st.startswith(_IGD_PREFIX) or not location:
        return None
    return SsdpResponse(responder=responder, location=location, st=st, server=headers.get("server"))


def discover(
    *, target: tuple[str, int] = SSDP_MULTICAST, timeout: float = 2.0, max_responses: int = 16
) -> list[SsdpResponse]:
    """Send the M-SEARCH to ``target`` and collect IGD answers until ``timeout`` seconds have passed.

    ``target`` is the multicast group in production; tests pass a unicast 127.0.0.1 responder. Duplicate
    answers (same responder and LOCATION) are folded; at most ``max_responses`` are kept so a flood cannot
    grow memory.
    """
    deadline = time.monotonic() + timeout
    found: list[SsdpResponse] = []
    seen: set[tuple[str, str]] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if ipaddress.ip_address(target[0]).is_multicast:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
        message = build_msearch(target)
        for _ in range(2):  # UDP may drop one; the UPnP DA recommends sending more than once
            sock.sendto(message, target)
        while len(found) < max_responses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                data, (address, _port) = sock.recvfrom(_MAX_DATAGRAM)
            except TimeoutError:
                break
            except OSError:
                continue  # e.g. ICMP port unreachable surfacing as ECONNREFUSED on a unicast target
            response = parse_ssdp_response(data, address)
            if response is not None and (address, response.location) not in seen:
                seen.add((address, response.location))
                found.append(response)
    return found


def allowed_location(location: str, responder: str) -> tuple[str, int, str] | None:
    """(host, port, path) if LOCATION is plain http to the responder's own IP address; else None
    (anti-SSRF)."""
    try:
        parts = urlsplit(location)
        port = parts.port or 80
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme != "http" or host is None or parts.username is not None or parts.password is not None:
        return None
    try:
        if ipaddress.ip_address(host) != ipaddress.ip_address(responder):
            return None
    except ValueError:
        return None  # a hostname: resolving it could point anywhere (DNS rebinding)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return host, port, path


def parse_description(xml_bytes: bytes) -> GatewayDescription:
    """The root device's identifying fields; DOCTYPE and entity declarations are refused outright."""
    stack: list[str] = []
    values: dict[str, list[str]] = {}
    saw_device = False

    def refuse(*_args: object) -> None:
        raise RouterProbeError("description XML declares a DTD or entities; refused")

    def start(name: str, _attrs: dict[str, str]) -> None:
        nonlocal saw_device
        local = name.rsplit(" ", 1)[-1]
        stack.append(local)
        if stack == ["root", "device"]:
            saw_device = True

    def end(_name: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if len(stack) == 3 and stack[:2] == ["root", "device"] and stack[2] in _FIELDS:
            parts = values.setdefault(stack[2], [])
            if sum(len(p) for p in parts) < _MAX_FIELD:
                parts.append(data)

    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(xml_bytes, True)
    except xml.parsers.expat.ExpatError as exc:
        raise RouterProbeError(f"description is not well-formed XML: {exc}") from exc
    if not saw_device:
        raise RouterProbeError("description has no root device element")

    def field(tag: str) -> str | None:
        text = " ".join("".join(values.get(tag, [])).split())[:_MAX_FIELD]
        return text or None

    return GatewayDescription(
        manufacturer=field("manufacturer"),
        model_name=field("modelName"),
        model_number=field("modelNumber"),
        friendly_name=field("friendlyName"),
    )


def fetch_description(
    location: str, responder: str, *, timeout: float = 2.0, max_bytes: int = MAX_DESCRIPTION_BYTES
) -> GatewayDescription:
    """GET the description XML, only from the responder itself, within ``timeout`` overall and
    ``max_bytes``."""
    target = allowed_location(location, responder)
    if target is None:
        raise RouterProbeError(
            f"LOCATION {location[:200]!r} is not an http URL on the responder {responder}; not fetched"
        )
    host, port, path = target
    deadline = time.monotonic() + timeout
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(
            "GET", path, headers={"Accept": "text/xml", "Connection": "close", "User-Agent": "isp-agent"}
        )
        resp = conn.getresponse()
        if resp.status != 200:
            raise RouterProbeError(f"description request returned HTTP {resp.status}")
        length = resp.getheader("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > max_bytes:
            raise RouterProbeError(f"description is {int(length)} bytes, over the {max_bytes}-byte limit")
        body = bytearray()
        while True:
            if time.monotonic() > deadline:
                raise RouterProbeError(f"description download exceeded {timeout:g} s")
            chunk = resp.read1(8192) if hasattr(resp, "read1") else resp.read(8192)
            if not chunk:
                break
            body += chunk
            if len(body) > max_bytes:
                raise RouterProbeError(f"description exceeds the {max_bytes}-byte limit")
    except (OSError, http.client.HTTPException) as exc:
        raise RouterProbeError(f"cannot fetch the description from {host}:{port}: {exc}") from exc
    finally:
        conn.close()
    return parse_description(bytes(body))


def probe_router(
    *,
    target: tuple[str, int] = SSDP_MULTICAST,
    timeout: float = 2.0,
    max_bytes: int = MAX_DESCRIPTION_BYTES,
) -> ItemResult:
    """別紙5 (11), the model part: discover the gateway and read its description; unavailable with a reason.

    The value is ``{"model": {"manufacturer", "model_name", "model_number", "friendly_name"}}``. Credentials
    are added by ``collect`` only if the subscriber typed them in.
    """
    responses = discover(target=target, timeout=timeout)
    if not responses:
        return ItemResult.unavailable(
            Item.ROUTER,
            f"no UPnP Internet Gateway Device answered within {timeout:g} s (UPnP may be off on the router)",
        )
    problems: list[str] = []
    for response in responses:
        try:
            description = fetch_description(
                response.location, response.responder, timeout=timeout, max_bytes=max_bytes
            )
        except RouterProbeError as exc:
            problems.append(f"{response.responder}: {exc}")
            continue
        if description.manufacturer is None and description.model_name is None:
            problems.append(f"{response.responder}: description names no manufacturer or model")
            continue
        return ItemResult.ok(Item.ROUTER, {"model": description.to_wire()})
    return ItemResult.unavailable(
        Item.ROUTER, "gateway answered but no usable description: " + "; ".join(problems)
    )
