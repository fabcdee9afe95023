"""Support codes, rate limits and lockouts that hold across every broker process (docs/cluster.md).

Today these live in one process's memory (``broker.sessions.SessionManager.by_code``,
``broker.policy.CodeAttemptGuard`` and ``RateLimit``): with several processes an operator could try
10 codes on each of them, a code could be claimed on two, and a subscriber could ask 5 times an hour
on each (第18条⑤). Here they are rows of the shared database, with the same rules and defaults:

- :class:`SupportCodes` — a 6-digit code per waiting request (DESIGN §5), single use cluster-wide:
  issuing takes the code only if no live request holds it; a claim is one conditional ``UPDATE``.
  :meth:`SupportCodes.claim` applies the code-guessing rules of ``CodeAttemptGuard`` in the same
  transaction: claims per operator and per address per minute (``rate_limited``), and a run of wrong
  codes locks the operator out of claiming by code (``account_locked``).
- :class:`SharedLimits` — a sliding-window limit per key (operator logins and enrollments per
  address, support requests per contract per hour, 第18条⑤) and a lockout after consecutive failures.

Each public method is one write transaction; every decision is taken under the key's row lock
(:func:`.repo_guards.lock_key`), so concurrent processes take turns per key and a limit of N lets
exactly N through. Refusals are :class:`broker.errors.RefusedError` with the stable codes the
in-memory guards use; they are raised *after* the transaction committed, so a wrong code is counted
even though the claim is refused. The caller audits (``claim.failed`` etc.), as today.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from protocol.errors import ErrorCode

from ..errors import RefusedError
from . import repo_guards
from .db import Database, Tx
from .repo_guards import CodeRow

__all__ = ["CodeRules", "SharedLimits", "SupportCodes"]

MINUTE: Final = 60.0

#: How many fresh codes :meth:`SupportCodes.issue` draws before giving up (with 1,000,000 codes and a
#: few thousand live requests, one draw in 200 collides; 20 in a row do not happen).
MAX_CODE_DRAWS: Final = 20


def _random_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


@dataclass(frozen=True, slots=True)
class CodeRules:
    """The code-guessing limits (the defaults of ``broker.policy.CodeAttemptGuard``)."""

    max_per_window_per_operator: int = 10
    """Claims by code per operator per ``window``."""
    max_per_window_per_address: int = 30
    """Claims by code per client address per ``window`` (many accounts behind one address)."""
    lockout_after: int = 10
    """Consecutive wrong codes that lock the operator out of claiming by code."""
    lockout_for: float = 900.0
    """Seconds the lockout lasts (15 minutes)."""
    window: float = MINUTE
    """Length of the rate window in seconds."""


def _locked(until: float, now: float, what: str) -> RefusedError:
    return RefusedError(
        f"{what}: locked for {int(until - now + 0.999)} s",
        code=ErrorCode.ACCOUNT_LOCKED,
        retry_after=until - now,
    )


async def _window_hit(tx: Tx, key: str, *, limit: int, window: float, now: float) -> float | None:
    """Inside a transaction holding the key's lock: record one hit, or the seconds until one fits."""
    hits = await repo_guards.recent_hits(tx, key, since=now - window, limit=limit)
    if len(hits) >= limit:
        return max(0.0, hits[-limit] + window - now)
    await repo_guards.add_hit(tx, key, at=now)
    return None


class SupportCodes:
    def __init__(
        self, db: Database, *, rules: CodeRules | None = None, new_code: Callable[[], str] = _random_code
    ) -> None:
        self.db = db
        self.rules = rules or CodeRules()
        self.new_code = new_code

    async def issue(self, *, session_id: str, node: str, contract_id: str, now: float, ttl: float) -> str:
        """A code no live request holds, valid ``ttl`` seconds (10 minutes by default in the rules)."""
        async with self.db.write() as tx:
            for _ in range(MAX_CODE_DRAWS):
                code = self.new_code()
                if await repo_guards.insert_code(
                    tx,
                    code,
                    session_id=session_id,
                    node=node,
                    contract_id=contract_id,
                    now=now,
                    expires_at=now + ttl,
                ):
                    return code
        raise RefusedError("no free support code; try again", code=ErrorCode.INTERNAL, retry_after=1.0)

    async def claim(self, code: str, *, operator: str, address: str, now: float) -> CodeRow:
        """Claim a waiting request by its code for ``operator`` (from ``address``), or raise:
        ``account_locked`` (too many wrong codes in a row), ``rate_limited`` (too many attempts),
        ``code_invalid`` (unknown, expired or already claimed — counted as a wrong code)."""
        r = self.rules
        op_key, addr_key = f"code:op:{operator}", f"code:addr:{address}"
        refusal: RefusedError
        async with self.db.write() as tx:
            # Always the operator's key before the address's: one order, so two claims never deadlock.
            op = await repo_guards.lock_key(tx, op_key, now=now)
            await repo_guards.lock_key(tx, addr_key, now=now)
            if op.locked_until is not None and now < op.locked_until:
                refusal = _locked(op.locked_until, now, "too many wrong support codes in a row")
            else:
                wait = await _window_hit(
                    tx, op_key, limit=r.max_per_window_per_operator, window=r.window, now=now
                )
                if wait is None:
                    wait = await _window_hit(
                        tx, addr_key, limit=r.max_per_window_per_address, window=r.window, now=now
                    )
                if wait is not None:
                    refusal = RefusedError(
                        "too many support-code attempts; wait a moment",
                        code=ErrorCode.RATE_LIMITED,
                        retry_after=wait,
                    )
                else:
                    row = await repo_guards.claim_code(tx, code, now=now, claimed_by=operator)
                    if row is not None:
                        await repo_guards.set_key(tx, op_key, failures=0, locked_until=None, now=now)
                        return row
                    failures = op.failures + 1
                    locked_until = now + r.lockout_for if failures >= r.lockout_after else None
                    await repo_guards.set_key(
                        tx,
                        op_key,
                        failures=0 if locked_until is not None else failures,
                        locked_until=locked_until,
                        now=now,
                    )
                    refusal = RefusedError("no waiting request has this code", code=ErrorCode.CODE_INVALID)
        raise refusal

    async def void_session(self, session_id: str, *, now: float) -> int:
        """The request was withdrawn or ended before a claim: its code no longer works anywhere."""
        async with self.db.write() as tx:
            return await repo_guards.void_session_codes(tx, session_id, now=now)

    async def get(self, code: str) -> CodeRow | None:
        async with self.db.read() as tx:
            return await repo_guards.get_code(tx, code)

    async def waiting(self, *, now: float, limit: int = 10_000) -> list[CodeRow]:
        """Live, unclaimed codes of every process, oldest first (the cluster's queue; never shown as
        codes: the caller keeps session, contract and times)."""
        async with self.db.read() as tx:
            return await repo_guards.waiting_codes(tx, now=now, limit=limit)

    async def live(self, *, now: float) -> int:
        """Codes issued, unexpired and unclaimed (a metric)."""
        async with self.db.read() as tx:
            return await repo_guards.count_live_codes(tx, now=now)

    async def locked_until(self, operator: str, *, now: float) -> float | None:
        async with self.db.read() as tx:
            row = await repo_guards.get_key(tx, f"code:op:{operator}")
        if row is None or row.locked_until is None or now >= row.locked_until:
            return None
        return row.locked_until

    async def purge(self, *, now: float) -> int:
        """Delete expired code rows (run now and then, any process)."""
        async with self.db.write(durable=False) as tx:
            return await repo_guards.delete_expired_codes(tx, now=now)


class SharedLimits:
    """Sliding-window limits and failure lockouts by key, shared by every process on the database.

    Keys are the caller's: ``login:addr:<ip>``, ``enroll:addr:<ip>``, ``request:<contract>`` (第18条⑤:
    at most 5 support requests an hour), ``login:op:<name>``. Methods return values instead of
    raising where the caller decides what to say (a login refusal must not tell which part was wrong).
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    async def hit(self, key: str, *, limit: int, window: float, now: float) -> float | None:
        """Count one event if it fits: None (counted), else the seconds until one more fits (not
        counted). Exact across processes: under concurrency exactly ``limit`` get None per window."""
        if limit < 1 or window <= 0:
            raise ValueError("limits must be positive")
        # Not durable: a hit lost to a power cut lets one more attempt through, nothing worse; other
        # processes see the hit at commit either way.
        async with self.db.write(durable=False) as tx:
            await repo_guards.lock_key(tx, key, now=now)
            return await _window_hit(tx, key, limit=limit, window=window, now=now)

    async def failure(self, key: str, *, lockout_after: int, lockout_for: float, now: float) -> float | None:
        """One more consecutive failure; at ``lockout_after`` lock the key until ``now + lockout_for``
        (and restart the count). The new lock's end if this failure locked it, else None."""
        if lockout_after < 1 or lockout_for < 0:
            raise ValueError("lockout_after must be positive and lockout_for not negative")
        async with self.db.write() as tx:
            row = await repo_guards.lock_key(tx, key, now=now)
            failures = row.failures + 1
            locked_until = now + lockout_for if failures >= lockout_after else None
            await repo_guards.set_key(
                tx,
                key,
                failures=0 if locked_until is not None else failures,
                locked_until=locked_until if locked_until is not None else row.locked_until,
                now=now,
            )
        return locked_until

    async def success(self, key: str, *, now: float) -> None:
        """A success ends the run of failures (a running lockout stays)."""
        async with self.db.write() as tx:
            row = await repo_guards.lock_key(tx, key, now=now)
            await repo_guards.set_key(tx, key, failures=0, locked_until=row.locked_until, now=now)

    async def locked_until(self, key: str, *, now: float) -> float | None:
        async with self.db.read() as tx:
            row = await repo_guards.get_key(tx, key)
        if row is None or row.locked_until is None or now >= row.locked_until:
            return None
        return row.locked_until

    async def check_unlocked(self, key: str, *, now: float, what: str) -> None:
        """Raise ``account_locked`` while the key is locked."""
        until = await self.locked_until(key, now=now)
        if until is not None:
            raise _locked(until, now, what)

    async def unlock(self, key: str, *, now: float) -> None:
        """An administrator lifts a lockout."""
        async with self.db.write() as tx:
            await repo_guards.lock_key(tx, key, now=now)
            await repo_guards.set_key(tx, key, failures=0, locked_until=None, now=now)

    async def purge(self, *, now: float, keep: float = 86_400.0) -> tuple[int, int]:
        """Forget hits older than ``keep`` seconds (longer than any window) and idle keys."""
        async with self.db.write(durable=False) as tx:
            return await repo_guards.purge(tx, hits_before=now - keep, idle_before=now - keep, now=now)
