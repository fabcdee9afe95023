"""The enrollment file and link the desktop app accepts: the broker writes one, hostile ones are
refused with ``bad_enroll_file`` before anything leaves the PC."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from agent.desktop.enrollfile import FORMAT, MAX_FILE_BYTES, EnrollFileError, EnrollInfo, load, parse_link
from tests.helpers import BrokerProcess

PIN = "ab" * 32
GOOD = {
    "format": FORMAT,
    "broker": "wss://support.example.jp:8443",
    "contract_id": "C-1001",
    "token": "tok_-0123456789abcdef",
    "ca_fingerprint": "sha256:" + PIN,
}


def write(tmp_path: Path, values: object) -> str:
    path = tmp_path / "x.isp-enroll"
    path.write_text(json.dumps(values))
    return str(path)


def test_file_and_link_round_trip(tmp_path: Path) -> None:
    info = load(write(tmp_path, GOOD))
    assert info == EnrollInfo("wss://support.example.jp:8443", "C-1001", "tok_-0123456789abcdef", PIN)
    assert load(info.to_link()) == info
    assert load(write(tmp_path, json.loads(info.to_json()))) == info


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("broker", "https://support.example.jp"),  # only wss
        ("broker", "wss://"),
        ("broker", "wss://host:99999"),
        ("broker", "wss://host/other?x=1"),
        ("contract_id", "C 1001"),
        ("contract_id", "x" * 100),
        ("token", "short"),
        ("token", "has space in it"),
        ("token", "\u202etoken-with-bidi"),
        ("ca_fingerprint", "sha256:abcd"),
        ("ca_fingerprint", "ab:cd"),
        ("format", "something-else/1"),
        ("token", 12345678),
    ],
)
def test_hostile_values_are_refused_with_a_code(tmp_path: Path, field: str, value: object) -> None:
    with pytest.raises(EnrollFileError) as caught:
        load(write(tmp_path, {**GOOD, field: value}))
    assert caught.value.code == "bad_enroll_file"


def test_missing_large_binary_and_odd_links_are_refused(tmp_path: Path) -> None:
    for bad in (
        write(tmp_path, [1, 2]),
        str(tmp_path / "missing.isp-enroll"),
        "isp-remote-support:enroll?broker=wss%3A%2F%2Fh&broker=wss%3A%2F%2Fg&contract_id=C&token=12345678&ca_fingerprint=x",
        "https://evil.example/enroll",
    ):
        with pytest.raises(EnrollFileError):
            load(bad)
    big = tmp_path / "big.isp-enroll"
    big.write_bytes(b" " * (MAX_FILE_BYTES + 1))
    with pytest.raises(EnrollFileError, match="too large"):
        load(str(big))
    binary = tmp_path / "bin.isp-enroll"
    binary.write_bytes(b"\xff\xfe{}")
    with pytest.raises(EnrollFileError, match="UTF-8"):
        load(str(binary))
    with pytest.raises(EnrollFileError):
        parse_link("isp-remote-support:enroll?" + "a=1&" * 20)


def test_the_broker_writes_a_file_the_app_reads(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "broker")
    path = tmp_path / "C-7001.isp-enroll"
    out = broker.cli("subscriber", "add", "C-7001", "--enroll-file", str(path)).stdout
    assert str(path) in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the token
    info = load(str(path))
    assert info.contract_id == "C-7001"
    assert f"--token={info.token} " in out
    assert f"sha256:{info.ca_fingerprint}" in out
