"""The message classes themselves: registry, tags, frozen and keyword-only, field constraints."""

from __future__ import annotations

import typing
from collections.abc import Callable

import msgspec
import msgspec.inspect
import pytest

from protocol.codec import decode, encode
from protocol.errors import ErrorCode, InvalidField
from protocol.messages import (
    MESSAGE_TYPES,
    AgentStatus,
    Enrolled,
    Error,
    Hello,
    Message,
    Ping,
)


def test_registry_is_exactly_the_union() -> None:
    assert set(MESSAGE_TYPES.values()) == set(typing.get_args(Message))


def test_registry_keys_are_the_wire_tags() -> None:
    for tag, cls in MESSAGE_TYPES.items():
        assert cls.__struct_config__.tag == tag
        assert cls.__struct_config__.tag_field == "type"


@pytest.mark.parametrize("tag", sorted(MESSAGE_TYPES))
def test_every_message_is_frozen_kw_only_and_strict(tag: str) -> None:
    cls = MESSAGE_TYPES[tag]
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    assert cls.__struct_config__.frozen
    assert info.forbid_unknown_fields
    assert info.tag_field == "type"
    make: Callable[..., object] = cls
    with pytest.raises(TypeError):
        make("positional")


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        Ping("c1", 1.0)  # type: ignore[call-arg]


def test_assigning_a_field_raises() -> None:
    ping = Ping(id="c1", time=1.0)
    with pytest.raises(AttributeError):
        ping.time = 2.0  # type: ignore[misc]
    assert ping.time == 1.0


def test_messages_are_hashable_values() -> None:
    assert Ping(id="c1", time=1.0) == Ping(id="c1", time=1.0)
    assert len({Ping(id="c1", time=1.0), Ping(id="c1", time=1.0)}) == 1


def test_defaults() -> None:
    error = decode(b'{"type":"error","code":"internal"}')
    assert error == Error(code="internal", message="", id=None, retry_after=None)
    status = decode(b'{"type":"agent_status","machine_name":"pc"}')
    assert status == AgentStatus(machine_name="pc", agent_version="", display=False)


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_error_code_fits_the_wire_code_type(code: ErrorCode) -> None:
    message = Error(code=code.value, message="x")
    assert decode(encode(message)) == message


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"hello","versions":[],"role":"agent"}',  # at least one version
        b'{"type":"hello","versions":[1,2,3,4,5,6,7,8,9],"role":"agent"}',  # at most eight
        b'{"type":"hello","versions":[0],"role":"agent"}',  # versions start at 1
        b'{"type":"hello","versions":[65536],"role":"agent"}',
        b'{"type":"hello","versions":[1.5],"role":"agent"}',
    ],
)
def test_hello_version_constraints(body: bytes) -> None:
    with pytest.raises(InvalidField):
        decode(body)


def test_hello_accepts_eight_versions() -> None:
    hello = decode(b'{"type":"hello","versions":[1,2,3,4,5,6,7,8],"role":"operator"}')
    assert hello == Hello(versions=(1, 2, 3, 4, 5, 6, 7, 8), role="operator")


def _enrolled(serial: str) -> bytes:
    return encode(Enrolled(id="e1", certificate_pem="c", ca_pem="a", serial=serial, not_after=1.0))


@pytest.mark.parametrize("serial", ["ABCDEF", "0x1f", "", "1" * 41, "12 34"])
def test_serial_must_be_lowercase_hex_up_to_40_digits(serial: str) -> None:
    # Constructing does not validate (msgspec validates on decode), so encode then decode.
    with pytest.raises(InvalidField):
        decode(_enrolled(serial))


def test_serial_of_40_hex_digits_is_accepted() -> None:
    assert isinstance(decode(_enrolled("f" * 40)), Enrolled)


@pytest.mark.parametrize("code", ["Token_Used", "with space", "", "x" * 65])
def test_error_code_pattern(code: str) -> None:
    with pytest.raises(InvalidField):
        decode(encode(Error(code=code)))


def test_retry_after_must_not_be_negative() -> None:
    with pytest.raises(InvalidField):
        decode(b'{"type":"error","code":"rate_limited","retry_after":-1}')
