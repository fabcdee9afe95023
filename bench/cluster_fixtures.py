"""Enrolled agents for ``bench.cluster_idle`` in SQLite (``bench.fixtures``) or in PostgreSQL.

PostgreSQL: a database with a random name on 127.0.0.1:5432 (user postgres, trust), dropped by
:func:`postgres_database` at the end. The agents are made as ``bench.fixtures`` makes them (the
broker's own CA signs a CSR per agent, each agent its own P-256 key) and stored through the
broker's ``Storage`` services over that URL (subscriber, token, completed enrollment), exactly what
an enrollment leaves behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from bench.fixtures import Agent, Fixture
from broker.auditkey import load_or_create_audit_key
from broker.config import BrokerConfig
from broker.pki import load_pki
from broker.storage import keyed_chain, open_storage
from broker.store import CertificateRecord
from certs import build_csr, generate_private_key, private_key_to_pem, serial_hex

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PARALLEL = 8
"""Enrollments stored at once (the PostgreSQL pool's connections)."""


@contextmanager
def postgres_database(admin_url: str = ADMIN_URL, *, prefix: str = "bench_cluster") -> Iterator[str]:
    """A new, empty database; its URL; dropped (with every connection to it) at the end."""
    import psycopg

    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_postgres(data_dir: Path, url: str, n_agents: int) -> Fixture:
    """CA and server certificate in ``data_dir``; ``n_agents`` enrolled agents in ``url``."""
    t0 = time.perf_counter()
    pki = load_pki(BrokerConfig(data_dir=data_dir), now=datetime.now(UTC), env={})
    agents_dir = data_dir / "bench-agents"
    agents_dir.mkdir(exist_ok=True)

    async def run() -> list[Agent]:
        chain = keyed_chain(load_or_create_audit_key(data_dir).chain)
        storage = await open_storage(url, chain=chain)
        agents: list[Agent] = []
        try:
            now = time.time()
            dt = datetime.fromtimestamp(now, UTC)

            async def one(i: int) -> Agent:
                contract = f"B-{i:06d}"
                key = generate_private_key()
                cert = pki.ca.sign_client_csr(
                    build_csr(key, common_name=contract), expected_common_name=contract, now=dt
                )
                cert_pem = cert.public_bytes(serialization.Encoding.PEM)
                digest = hashlib.sha256(secrets.token_urlsafe(32).encode()).hexdigest()
                await storage.subscribers.add(contract, now=now, actor="bench")
                await storage.subscribers.add_enrollment_token(
                    contract, digest, now=now, expires_at=now + 3600, actor="bench"
                )
                record = CertificateRecord(
                    serial=serial_hex(cert),
                    contract_id=contract,
                    machine_name=f"pc-{i}",
                    cert_pem=cert_pem.decode("ascii"),
                    issued_at=now,
                    not_after=cert.not_valid_after_utc.timestamp(),
                )
                await storage.subscribers.complete_enrollment(digest, record, now=now)
                path = agents_dir / f"{i}.pem"
                path.write_bytes(private_key_to_pem(key) + cert_pem)
                return Agent(record.serial, contract, str(path))

            for first in range(0, n_agents, PARALLEL):
                last = min(n_agents, first + PARALLEL)
                agents += await asyncio.gather(*(one(i) for i in range(first, last)))
        finally:
            await storage.close()
        return agents

    agents = asyncio.run(run())
    return Fixture(
        data_dir=data_dir,
        ca_path=str(pki.ca_path),
        ca_fingerprint=pki.ca.fingerprint,
        agents=agents,
        operator_token="",
        setup_seconds=time.perf_counter() - t0,
    )
