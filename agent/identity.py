"""The agent's identity on disk: its private key, its certificate, the pinned CA, its settings.

All under the per-user data dir (platformdirs) or ``--data-dir``; every file 0600, written
atomically. The private key is generated here and never leaves the PC (DESIGN §3, 第31条1項④).
``agent.json`` is written last: its presence means the enrollment completed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

from certs import write_secret_file

APP_NAME = "isp-remote-support-agent"
KEY_FILE = "agent-key.pem"
CERT_FILE = "agent.pem"
CA_FILE = "ca.pem"
STATE_FILE = "agent.json"


def default_data_dir() -> Path:
    if os.environ.get("AGENT_DATA_DIR"):
        return Path(os.environ["AGENT_DATA_DIR"])
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    broker_url: str
    contract_id: str
    serial: str
    """Client certificate ID (別紙5 (2))."""
    ca_fingerprint: str
    machine_name: str
    data_dir: Path

    @property
    def key_path(self) -> Path:
        return self.data_dir / KEY_FILE

    @property
    def cert_path(self) -> Path:
        return self.data_dir / CERT_FILE

    @property
    def ca_path(self) -> Path:
        return self.data_dir / CA_FILE


def is_enrolled(data_dir: Path) -> bool:
    return (data_dir / STATE_FILE).exists()


def load_identity(data_dir: Path) -> Identity | None:
    path = data_dir / STATE_FILE
    if not path.exists():
        return None
    raw = json.loads(path.read_text("utf-8"))
    return Identity(
        broker_url=raw["broker_url"],
        contract_id=raw["contract_id"],
        serial=raw["serial"],
        ca_fingerprint=raw["ca_fingerprint"],
        machine_name=raw.get("machine_name", ""),
        data_dir=data_dir,
    )


def save_identity(identity: Identity, *, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> None:
    data_dir = identity.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    write_secret_file(identity.key_path, key_pem)
    write_secret_file(identity.cert_path, cert_pem)
    write_secret_file(identity.ca_path, ca_pem)
    state = {k: v for k, v in asdict(identity).items() if k != "data_dir"}
    write_secret_file(data_dir / STATE_FILE, json.dumps(state, indent=2).encode("utf-8"))
