"""A broker data dir with thousands of enrolled agents, an operator and enrollment tokens.

Certificates are issued the fast way the issue allows: the broker's own CA object signs a CSR per
agent (each agent has its own P-256 key) and the rows go in through the storage's normal API
(subscriber, token, completed enrollment), so the broker sees exactly what a real enrollment
leaves behind. Each agent's key and certificate are written to one PEM file for the load
processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
from cryptography.hazmat.primitives import serialization

from broker.auditkey import load_or_create_audit_key
from broker.config import BrokerConfig
from broker.datakeys import DataKeyring
from broker.enrollment import issue_token
from broker.operators import OperatorAccounts
from broker.pki import load_pki
from broker.storage import Storage, keyed_chain, open_storage
from broker.store import CertificateRecord
from certs import build_csr, generate_private_key, private_key_to_pem, serial_hex

OPERATOR = "bench"


@dataclass(frozen=True, slots=True)
class Agent:
    serial: str
    contract_id: str
    pem: str
    """Path of a file holding the agent's key and certificate."""


@dataclass(slots=True)
class Fixture:
    data_dir: Path
    ca_path: str
    ca_fingerprint: str
    agents: list[Agent]
    operator_token: str
    setup_seconds: float

    def manifest(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir),
            "ca": self.ca_path,
            "ca_fingerprint": self.ca_fingerprint,
            "operator_token": self.operator_token,
            "agents": [[a.serial, a.contract_id, a.pem] for a in self.agents],
        }

    def write_manifest(self) -> Path:
        path = self.data_dir / "bench-manifest.json"
        path.write_text(json.dumps(self.manifest()))
        return path


def create(data_dir: Path, n_agents: int) -> Fixture:
    """CA, server certificate, ``n_agents`` enrolled agents and a logged-in operator."""
    t0 = time.perf_counter()
    config = BrokerConfig(data_dir=data_dir)
    pki = load_pki(config, now=datetime.now(UTC), env={})
    agents_dir = data_dir / "bench-agents"
    agents_dir.mkdir(exist_ok=True)
    agents: list[Agent] = []

    async def rows() -> None:
        storage = await _open(data_dir)
        try:
            now = time.time()
            dt = datetime.fromtimestamp(now, UTC)
            for i in range(n_agents):
                contract = f"B-{i:06d}"
                key = generate_private_key()
                cert = pki.ca.sign_client_csr(
                    build_csr(key, common_name=contract), expected_common_name=contract, now=dt
                )
                cert_pem = cert.public_bytes(serialization.Encoding.PEM)
                serial = serial_hex(cert)
                token = secrets.token_urlsafe(32)
                digest = hashlib.sha256(token.encode()).hexdigest()
                await storage.subscribers.add(contract, now=now, actor="bench")
                await storage.subscribers.add_enrollment_token(
                    contract, digest, now=now, expires_at=now + 3600, actor="bench"
                )
                await storage.subscribers.complete_enrollment(
                    digest,
                    CertificateRecord(
                        serial=serial,
                        contract_id=contract,
                        machine_name=f"pc-{i}",
                        cert_pem=cert_pem.decode("ascii"),
                        issued_at=now,
                        not_after=cert.not_valid_after_utc.timestamp(),
                    ),
                    now=now,
                )
                path = agents_dir / f"{i}.pem"
                path.write_bytes(private_key_to_pem(key) + cert_pem)
                agents.append(Agent(serial, contract, str(path)))
        finally:
            await storage.close()

    asyncio.run(rows())
    token = operator_token(data_dir)
    return Fixture(
        data_dir=data_dir,
        ca_path=str(pki.ca_path),
        ca_fingerprint=pki.ca.fingerprint,
        agents=agents,
        operator_token=token,
        setup_seconds=time.perf_counter() - t0,
    )


async def _open(data_dir: Path, database: str | None = None) -> Storage:
    chain = keyed_chain(load_or_create_audit_key(data_dir).chain)
    return await open_storage(database or data_dir / "broker.sqlite3", chain=chain)


def operator_token(data_dir: Path, database: str | None = None) -> str:
    """Create the operator, set its password, log in once; the token serves every operator link.
    ``database``: a PostgreSQL URL (``bench.cluster_fixtures``) instead of the data dir's SQLite."""

    async def run() -> str:
        storage = await _open(data_dir, database)
        try:
            accounts = OperatorAccounts(storage, DataKeyring.open(data_dir / "keys"))
            now = time.time()
            created = await accounts.create(OPERATOR, role="supervisor", now=now, actor="bench")
            secret = pyotp.parse_uri(created.totp_uri).secret
            password = created.initial_password + "-bench-1"
            await accounts.change_password(OPERATOR, created.initial_password, password, now=now)
            totp = pyotp.TOTP(secret).now()
            result = await accounts.login(OPERATOR, password, totp, now=now, peer="127.0.0.1")
            return str(result.token)
        finally:
            await storage.close()

    return asyncio.run(run())


def enrollment_tokens(data_dir: Path, n: int, *, prefix: str = "E") -> list[tuple[str, str]]:
    """``n`` new contracts with one enrollment token each: (contract_id, token)."""

    async def run() -> list[tuple[str, str]]:
        storage = await _open(data_dir)
        out: list[tuple[str, str]] = []
        try:
            now = time.time()
            for i in range(n):
                contract = f"{prefix}-{i:06d}-{secrets.token_hex(3)}"
                await storage.subscribers.add(contract, now=now, actor="bench")
                token = await issue_token(storage, contract, now=now, ttl=3600, actor="bench")
                out.append((contract, token))
        finally:
            await storage.close()
        return out

    return asyncio.run(run())
