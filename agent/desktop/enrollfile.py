"""The enrollment file (or link) the helpdesk gives a subscriber, so nobody types a long command.

Two forms carry the same four values as ``agent enroll`` (broker URL, contract ID, token, CA pin):

- a file ``*.isp-enroll`` (UTF-8 JSON, at most :data:`MAX_FILE_BYTES`)::

      {"format": "isp-remote-support-enroll/1", "broker": "wss://support.example.jp:8443",
       "contract_id": "C-1001", "token": "…", "ca_fingerprint": "sha256:…"}

- a link (SMS, e-mail, a QR code), pasted into the window::

      isp-remote-support:enroll?broker=wss%3A%2F%2F…&contract_id=C-1001&token=…&ca_fingerprint=sha256%3A…

Everything is hostile until checked (STYLE): ``wss://`` URL with a host, contract ID and token of
bounded length and printable ASCII, a well-formed SHA-256 pin. The pin is what makes the enrollment
safe (the broker's CA must match it before the token leaves the PC); the subscriber still accepts the
certificate on screen (第31条1項④). Errors carry the stable code ``bad_enroll_file``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from certs.errors import CertError
from certs.fingerprint import normalize_fingerprint

from ..errors import AgentError, AgentErrorCode

FORMAT: Final = "isp-remote-support-enroll/1"
LINK_PREFIX: Final = "isp-remote-support:enroll?"
MAX_FILE_BYTES: Final = 4096
MAX_TOKEN: Final = 256
_CONTRACT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TOKEN: Final = re.compile(r"[\x21-\x7e]{8,256}")  # MAX_TOKEN


class EnrollFileError(AgentError):
    code = AgentErrorCode.BAD_ENROLL_FILE


@dataclass(frozen=True, slots=True)
class EnrollInfo:
    broker: str
    contract_id: str
    token: str
    ca_fingerprint: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "broker": self.broker,
                "contract_id": self.contract_id,
                "token": self.token,
                "ca_fingerprint": f"sha256:{self.ca_fingerprint}",
            },
            indent=2,
        )

    def to_link(self) -> str:
        query = urllib.parse.urlencode(
            {
                "broker": self.broker,
                "contract_id": self.contract_id,
                "token": self.token,
                "ca_fingerprint": f"sha256:{self.ca_fingerprint}",
            }
        )
        return LINK_PREFIX + query


def validate(values: dict[str, object]) -> EnrollInfo:
    def text(name: str) -> str:
        value = values.get(name)
        if not isinstance(value, str) or not value:
            raise EnrollFileError(f"missing {name}")
        return value.strip()

    broker = text("broker")
    parts = urllib.parse.urlsplit(broker)
    if parts.scheme != "wss" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise EnrollFileError("broker must be wss://host[:port]")
    try:
        _ = parts.port
    except ValueError:
        raise EnrollFileError("broker port is not a number") from None
    contract = text("contract_id")
    if not _CONTRACT.fullmatch(contract):
        raise EnrollFileError("contract_id is not a contract ID")
    token = text("token")
    if not _TOKEN.fullmatch(token):
        raise EnrollFileError("token is not a token")
    try:
        pin = normalize_fingerprint(text("ca_fingerprint"))
    except CertError:
        raise EnrollFileError("ca_fingerprint is not a SHA-256 fingerprint") from None
    return EnrollInfo(broker=broker.rstrip("/"), contract_id=contract, token=token, ca_fingerprint=pin)


def parse_link(link: str) -> EnrollInfo:
    link = link.strip()
    if not link.startswith(LINK_PREFIX) or len(link) > MAX_FILE_BYTES:
        raise EnrollFileError("not an enrollment link")
    try:
        query = urllib.parse.parse_qs(link[len(LINK_PREFIX) :], strict_parsing=True, max_num_fields=8)
    except ValueError:
        raise EnrollFileError("not an enrollment link") from None
    values: dict[str, object] = {}
    for key, items in query.items():
        if len(items) != 1:
            raise EnrollFileError(f"{key} given twice")
        values[key] = items[0]
    return validate(values)


def parse_file_text(text: str) -> EnrollInfo:
    try:
        values = json.loads(text)
    except ValueError:
        raise EnrollFileError("not an enrollment file (JSON)") from None
    if not isinstance(values, dict) or values.get("format") != FORMAT:
        raise EnrollFileError(f"not an enrollment file (format {FORMAT})")
    return validate(values)


def load(source: str) -> EnrollInfo:
    """A pasted link, or the path of an enrollment file."""
    source = source.strip()
    if source.startswith(LINK_PREFIX):
        return parse_link(source)
    path = Path(source).expanduser()
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise EnrollFileError(f"cannot read {path.name}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise EnrollFileError("enrollment file too large")
    try:
        return parse_file_text(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise EnrollFileError("enrollment file is not UTF-8") from None
