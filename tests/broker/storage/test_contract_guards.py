"""Support codes, rate limits and lockouts on the shared database (broker/storage/guards.py), on SQLite
and PostgreSQL: the rules, and that they hold across processes (docs/cluster.md)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.errors import RefusedError
from broker.storage import Storage
from broker.storage.guards import CodeRules, SharedLimits, SupportCodes
from protocol.errors import ErrorCode
from tests.helpers import PYTHON, child_env

T = 1_764_000_000.0
TTL = 600.0
PROCESSES = 3


def codes_from(*values: str) -> Iterator[str]:
    yield from values


async def issue(codes: SupportCodes, session_id: str, now: float = T) -> str:
    return await codes.issue(session_id=session_id, node="node-a", contract_id="C-1", now=now, ttl=TTL)


async def refused(code: ErrorCode, coro: object) -> RefusedError:
    with pytest.raises(RefusedError) as info:
        await coro  # type: ignore[misc]
    assert info.value.code is code, info.value.message
    return info.value


# -- codes ---------------------------------------------------------------------------------------------


async def test_a_code_is_issued_claimed_once_and_names_its_session(storage: Storage) -> None:
    codes = SupportCodes(storage.db)
    code = await issue(codes, "s-one")
    assert len(code) == 6
    assert code.isdigit()
    assert await codes.live(now=T) == 1
    row = await codes.claim(code, operator="alice", address="192.0.2.1", now=T + 1)
    assert (row.session_id, row.node, row.contract_id, row.claimed_by) == ("s-one", "node-a", "C-1", "alice")
    assert row.claimed_at == T + 1
    await refused(ErrorCode.CODE_INVALID, codes.claim(code, operator="bob", address="192.0.2.2", now=T + 2))
    assert await codes.live(now=T + 2) == 0


async def test_a_live_code_is_never_issued_twice_and_expired_digits_come_back(storage: Storage) -> None:
    draws = codes_from("111111", "111111", "222222", "111111", "111111")
    codes = SupportCodes(storage.db, new_code=lambda: next(draws))
    assert await issue(codes, "s-1") == "111111"
    assert await issue(codes, "s-2") == "222222"  # 111111 is live: drawn again
    # Claimed, the digits still belong to s-1 until its expiry: a late claim never lands on a newer request.
    await codes.claim("111111", operator="alice", address="a", now=T + 1)
    with pytest.raises(RefusedError):
        await SupportCodes(storage.db, new_code=lambda: "111111").issue(
            session_id="s-3", node="n", contract_id="C-1", now=T + 2, ttl=TTL
        )
    assert await issue(codes, "s-4", now=T + TTL) == "111111"  # expired: free again
    row = await codes.claim("111111", operator="bob", address="b", now=T + TTL + 1)
    assert row.session_id == "s-4"


async def test_expired_and_voided_codes_do_not_claim(storage: Storage) -> None:
    codes = SupportCodes(storage.db)
    old = await issue(codes, "s-old")
    await refused(ErrorCode.CODE_INVALID, codes.claim(old, operator="alice", address="a", now=T + TTL))
    withdrawn = await issue(codes, "s-withdrawn", now=T + 10)
    assert await codes.void_session("s-withdrawn", now=T + 11) == 1
    await refused(ErrorCode.CODE_INVALID, codes.claim(withdrawn, operator="alice", address="a", now=T + 12))
    assert await codes.purge(now=T + TTL + 5) == 1  # s-old; s-withdrawn's row lives to its expiry
    assert await codes.get(old) is None
    assert await codes.get(withdrawn) is not None


async def test_wrong_codes_in_a_row_lock_the_operator_out(storage: Storage) -> None:
    rules = CodeRules(lockout_after=3, lockout_for=900.0, max_per_window_per_operator=100)
    codes = SupportCodes(storage.db, rules=rules)
    good = await issue(codes, "s-good")
    for i in range(2):
        await refused(ErrorCode.CODE_INVALID, codes.claim("999999", operator="eve", address="a", now=T + i))
    await codes.claim(good, operator="eve", address="a", now=T + 2)  # a right code ends the run
    for i in range(3):
        await refused(
            ErrorCode.CODE_INVALID, codes.claim("999999", operator="eve", address="a", now=T + 3 + i)
        )
    locked = await refused(
        ErrorCode.ACCOUNT_LOCKED, codes.claim(good, operator="eve", address="a", now=T + 6)
    )
    assert locked.retry_after == pytest.approx(900.0 - 1)
    assert await codes.locked_until("eve", now=T + 6) == T + 5 + 900
    # Another operator is not affected; the lockout ends on time.
    other = await issue(codes, "s-other", now=T + 6)
    await codes.claim(other, operator="frank", address="a", now=T + 7)
    await refused(ErrorCode.CODE_INVALID, codes.claim("999999", operator="eve", address="a", now=T + 905))


async def test_claims_are_rate_limited_per_operator_and_per_address(storage: Storage) -> None:
    rules = CodeRules(max_per_window_per_operator=3, max_per_window_per_address=5, lockout_after=100)
    codes = SupportCodes(storage.db, rules=rules)
    for i in range(3):
        await refused(ErrorCode.CODE_INVALID, codes.claim("999999", operator="eve", address="x", now=T + i))
    limited = await refused(
        ErrorCode.RATE_LIMITED, codes.claim("999999", operator="eve", address="x", now=T + 10)
    )
    assert limited.retry_after == pytest.approx(50.0)  # the oldest attempt leaves the window at T + 60
    for i in range(2):
        await refused(
            ErrorCode.CODE_INVALID, codes.claim("999999", operator=f"o{i}", address="x", now=T + 20)
        )
    await refused(ErrorCode.RATE_LIMITED, codes.claim("999999", operator="o9", address="x", now=T + 21))
    await refused(ErrorCode.CODE_INVALID, codes.claim("999999", operator="o9", address="y", now=T + 21))
    await refused(ErrorCode.CODE_INVALID, codes.claim("999999", operator="eve", address="y", now=T + 60))


# -- shared limits -------------------------------------------------------------------------------------


async def test_a_sliding_window_lets_exactly_the_limit_through(storage: Storage) -> None:
    limits = SharedLimits(storage.db)
    key = "request:C-1"  # 第18条⑤: at most 5 support requests an hour
    for i in range(5):
        assert await limits.hit(key, limit=5, window=3600, now=T + i * 60) is None
    assert await limits.hit(key, limit=5, window=3600, now=T + 600) == pytest.approx(3000.0)
    assert await limits.hit("request:C-2", limit=5, window=3600, now=T + 600) is None
    assert await limits.hit(key, limit=5, window=3600, now=T + 3600) is None  # the first left the window
    assert await limits.hit(key, limit=5, window=3600, now=T + 3601) == pytest.approx(59.0)


async def test_failures_lock_a_key_and_a_success_resets_the_run(storage: Storage) -> None:
    limits = SharedLimits(storage.db)
    key = "login:op:alice"
    assert await limits.failure(key, lockout_after=3, lockout_for=60, now=T) is None
    assert await limits.failure(key, lockout_after=3, lockout_for=60, now=T + 1) is None
    await limits.success(key, now=T + 2)
    assert await limits.failure(key, lockout_after=3, lockout_for=60, now=T + 3) is None
    assert await limits.failure(key, lockout_after=3, lockout_for=60, now=T + 4) is None
    assert await limits.failure(key, lockout_after=3, lockout_for=60, now=T + 5) == T + 65
    assert await limits.locked_until(key, now=T + 6) == T + 65
    await refused(ErrorCode.ACCOUNT_LOCKED, limits.check_unlocked(key, now=T + 6, what="login"))
    await limits.success(key, now=T + 7)  # a success does not lift a running lockout
    assert await limits.locked_until(key, now=T + 7) == T + 65
    assert await limits.locked_until(key, now=T + 65) is None
    await limits.failure(key, lockout_after=1, lockout_for=60, now=T + 100)
    await limits.unlock(key, now=T + 101)
    await limits.check_unlocked(key, now=T + 101, what="login")


async def test_purge_forgets_old_hits_and_idle_keys_only(storage: Storage) -> None:
    limits = SharedLimits(storage.db)
    await limits.hit("old", limit=5, window=60, now=T)
    await limits.failure("locked", lockout_after=1, lockout_for=10 * 86_400, now=T)
    await limits.hit("new", limit=5, window=60, now=T + 90_000)
    assert await limits.purge(now=T + 90_000) == (1, 1)  # the old hit, the idle key "old"
    assert await limits.locked_until("locked", now=T + 90_000) == T + 10 * 86_400
    assert await limits.hit("new", limit=1, window=60, now=T + 90_001) is not None


# -- across processes ----------------------------------------------------------------------------------


async def run_workers(url: str, tmp_path: Path, mode: str, *args: str) -> list[list[str]]:
    """PROCESSES worker processes (each COROUTINES coroutines, own connections) start at once."""
    go = tmp_path / f"go-{mode}"
    children = [
        subprocess.Popen(
            [PYTHON, "-m", "tests.broker.storage.guard_worker", url, str(go), mode, str(T), *args],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    results: list[list[str]] = []
    try:
        for child in children:
            assert child.stdout is not None
            assert (await asyncio.to_thread(child.stdout.readline)).strip() == "ready"
        go.touch()
        for child in children:
            out, err = await asyncio.to_thread(child.communicate, timeout=120)
            assert child.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return results


async def test_each_code_is_claimed_once_by_racing_processes(
    storage: Storage, storage_url: str, tmp_path: Path
) -> None:
    codes = SupportCodes(storage.db)
    issued = [await issue(codes, f"s-{i}") for i in range(12)]
    results = await run_workers(storage_url, tmp_path, "claim", *issued)
    won = [code for process in results for code in process]
    # 3 processes × 4 coroutines tried each of the 12 codes: each was claimed exactly once.
    assert sorted(won) == sorted(issued)
    assert sum(1 for process in results if process) >= 1
    for code in issued:
        row = await codes.get(code)
        assert row is not None
        assert row.claimed_by is not None


async def test_a_rate_limit_holds_across_processes(
    storage: Storage, storage_url: str, tmp_path: Path
) -> None:
    results = await run_workers(storage_url, tmp_path, "hit", "login:addr:198.51.100.7", "20", "7")
    outcomes = [o for process in results for o in process]
    assert len(outcomes) == PROCESSES * 20
    assert outcomes.count("ok") == 7  # not 7 per process


async def test_a_code_guessing_lockout_holds_across_processes(
    storage: Storage, storage_url: str, tmp_path: Path
) -> None:
    # 3 processes × 4 wrong codes from one operator, defaults (10 in a row lock for 15 min, 10 a minute).
    results = await run_workers(storage_url, tmp_path, "wrong", "mallory", "4")
    outcomes = sorted(o for process in results for o in process)
    assert outcomes == ["account_locked"] * 2 + ["code_invalid"] * 10
    codes = SupportCodes(storage.db)
    assert await codes.locked_until("mallory", now=T + 1) is not None
    good = await issue(codes, "s-after", now=T + 1)
    await refused(ErrorCode.ACCOUNT_LOCKED, codes.claim(good, operator="mallory", address="a", now=T + 2))
