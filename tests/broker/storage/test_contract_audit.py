"""Contract: the audit chain stays one strict sequence under concurrent writers, and its hash (or MAC)
function is the caller's choice."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
from collections.abc import Iterable
from pathlib import Path

from broker.audit import GENESIS_HASH, ChainReport
from broker.storage import AuditChain, Storage, open_storage
from broker.storage.repo_audit import ChainRow
from tests.helpers import PYTHON, child_env

PROCESSES = 4
PER_PROCESS = 40
IN_PROCESS = 60


async def test_concurrent_appenders_in_one_process_make_one_chain(storage: Storage) -> None:
    seqs = await asyncio.gather(
        *(
            storage.audit.append(
                actor="t", action="test.append", subject="one", details={"i": i}, now=float(i)
            )
            for i in range(IN_PROCESS)
        )
    )
    assert sorted(seqs) == list(range(1, IN_PROCESS + 1))
    report = await storage.audit.verify()
    assert report.ok, report.problems
    assert report.checked == IN_PROCESS


async def test_concurrent_appenders_in_several_processes_make_one_chain(
    storage: Storage, storage_url: str, tmp_path: Path
) -> None:
    await storage.audit.append(actor="t", action="test.start", subject="main", details={}, now=1.0)
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [PYTHON, "-m", "tests.broker.storage.appender", storage_url, f"p{n}", str(PER_PROCESS), str(go)],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert (await asyncio.to_thread(child.stdout.readline)).strip() == "ready"
        go.touch()
        # this process appends meanwhile too
        await asyncio.gather(
            *(
                storage.audit.append(
                    actor="t", action="test.append", subject="main", details={"i": i}, now=2.0
                )
                for i in range(PER_PROCESS)
            )
        )
        for child in children:
            out, err = await asyncio.to_thread(child.communicate, timeout=120)
            assert child.returncode == 0, err
            assert out.strip() == "done"
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    entries = await storage.audit.entries()
    total = 1 + PER_PROCESS * (PROCESSES + 1)
    assert [e.seq for e in entries] == list(range(1, total + 1))
    for n in range(PROCESSES):
        assert sorted(e.details["i"] for e in entries if e.subject == f"p{n}") == list(range(PER_PROCESS))
    report = await storage.audit.verify()
    assert report.ok, report.problems
    assert report.checked == total


KEY = b"k" * 32


def _mac(
    *, prev_hash: str, seq: int, at: float, actor: str, action: str, subject: str, details_json: str
) -> str:
    payload = json.dumps([prev_hash, seq, repr(float(at)), actor, action, subject, details_json])
    return hmac.new(KEY, payload.encode(), hashlib.sha256).hexdigest()


def _verify_mac(rows: Iterable[ChainRow], head: tuple[int, str] | str | None) -> ChainReport:
    report = ChainReport()
    prev = GENESIS_HASH
    last: tuple[int, str] | None = None
    for seq, at, actor, action, subject, details_json, prev_hash, stored in rows:
        report.checked += 1
        expected = _mac(
            prev_hash=prev,
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            details_json=details_json,
        )
        if prev_hash != prev or expected != stored:
            report.problems.append(f"entry {seq} does not verify")
        prev, last = stored, (seq, stored)
    if last != head:
        report.problems.append("head mismatch")
    return report


async def test_the_chain_function_is_pluggable(storage_url: str) -> None:
    """A keyed MAC (key outside the database) plugs in where the SHA-256 chain is the default."""
    keyed = AuditChain(entry_hash=_mac, verify=_verify_mac)
    storage = await open_storage(storage_url, chain=keyed)
    try:
        for i in range(3):
            await storage.audit.append(actor="t", action="x", subject="s", details={"i": i}, now=float(i))
        assert (await storage.audit.verify()).ok
        first = (await storage.audit.entries())[0]
        assert first.hash == _mac(
            prev_hash=GENESIS_HASH, seq=1, at=0.0, actor="t", action="x", subject="s", details_json='{"i":0}'
        )
    finally:
        await storage.close()
    plain = await open_storage(storage_url)  # the SHA-256 default does not accept MAC'd entries
    try:
        report = await plain.audit.verify()
        assert not report.ok
        assert len(report.problems) == 3
    finally:
        await plain.close()
