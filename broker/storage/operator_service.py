"""Operator accounts and session tokens: the rules of the old synchronous store, over the repository.

Same operations, same audit actions (``operator.add``, ``operator.login``, ``operator.login_failed``,
``operator.locked``, ``operator.unlocked``, ``operator.password_changed`` or the caller's action,
``operator.disable`` / ``operator.enable``, ``operator.logout``); no password, hash, secret or token
ever goes into ``details``. Each method is one transaction with its audit entries inside it. New:
:meth:`Operators.by_token` reads the account behind a session token in one SELECT (the broker read it
with two for every operator message).
"""

from __future__ import annotations

from typing import Any

from ..errors import AlreadyExists, NotFound
from ..operators import OperatorRecord, Role
from . import repo_operators
from .db import Database
from .services import AuditLog


class Operators:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def add(
        self,
        name: str,
        *,
        display_name: str,
        role: Role,
        password_hash: str,
        totp_secret_blob: bytes,
        now: float,
        actor: str,
        password_change_required: bool = True,
    ) -> OperatorRecord:
        async with self.db.write() as tx:
            if await repo_operators.get(tx, name) is not None:
                raise AlreadyExists(f"operator {name} already exists")
            await repo_operators.insert(
                tx,
                name,
                display_name=display_name,
                role=role,
                password_hash=password_hash,
                totp_secret_blob=totp_secret_blob,
                now=now,
                password_change_required=password_change_required,
            )
            await self.audit.add(
                tx,
                actor=actor,
                action="operator.add",
                subject=name,
                details={"role": role, "display_name": display_name},
                now=now,
            )
            record = await repo_operators.get(tx, name)
        assert record is not None  # just inserted
        return record

    async def get(self, name: str) -> OperatorRecord | None:
        async with self.db.read() as tx:
            return await repo_operators.get(tx, name)

    async def list_all(self) -> list[OperatorRecord]:
        async with self.db.read() as tx:
            return await repo_operators.list_all(tx)

    async def record_login_failure(
        self, name: str, *, now: float, lock_after: int, lock_for: float, peer: str, reason: str
    ) -> float | None:
        """Count one failed login; at ``lock_after`` in a row lock the account until ``now + lock_for``
        (and restart the count). The new ``locked_until`` if this failure locked it, else None."""
        async with self.db.write() as tx:
            record = await repo_operators.get(tx, name, lock=True)
            if record is None:
                raise NotFound(f"no operator {name}")
            failures = record.failed_logins + 1
            locked_until = now + lock_for if failures >= lock_after else None
            await repo_operators.set_failures(
                tx, name, failures=0 if locked_until is not None else failures, locked_until=locked_until
            )
            await self.audit.add(
                tx,
                actor="broker",
                action="operator.login_failed",
                subject=name,
                details={"peer": peer, "reason": reason, "failures": failures},
                now=now,
            )
            if locked_until is not None:
                await self.audit.add(
                    tx,
                    actor="broker",
                    action="operator.locked",
                    subject=name,
                    details={"peer": peer, "until": locked_until, "failures": failures},
                    now=now,
                )
        return locked_until

    async def record_login_success(
        self,
        name: str,
        *,
        now: float,
        totp_step: int,
        peer: str,
        token_hash: str,
        expires_at: float,
        password_hash: str | None = None,
    ) -> bool:
        """Consume the TOTP step, reset failures, store the token; False (nothing changed) when the
        step is not newer than the last accepted one (RFC 6238 §5.2 replay)."""
        async with self.db.write() as tx:
            if not await repo_operators.consume_totp_step(tx, name, totp_step):
                return False
            details: dict[str, Any] = {"peer": peer, "totp_step": totp_step}
            if password_hash is not None:
                await repo_operators.set_password_hash(tx, name, password_hash, change_required=None)
                details["rehashed"] = True
            await repo_operators.insert_token(tx, token_hash, name, now=now, expires_at=expires_at)
            details["expires_at"] = expires_at
            await self.audit.add(
                tx, actor=f"operator:{name}", action="operator.login", subject=name, details=details, now=now
            )
        return True

    async def set_password(
        self,
        name: str,
        password_hash: str,
        *,
        now: float,
        change_required: bool,
        actor: str,
        action: str = "operator.password_changed",
    ) -> None:
        async with self.db.write() as tx:
            if not await repo_operators.set_password_hash(
                tx, name, password_hash, change_required=change_required
            ):
                raise NotFound(f"no operator {name}")
            await self.audit.add(
                tx,
                actor=actor,
                action=action,
                subject=name,
                details={"change_required": change_required},
                now=now,
            )

    async def unlock(self, name: str, *, now: float, actor: str) -> None:
        async with self.db.write() as tx:
            if not await repo_operators.unlock(tx, name):
                raise NotFound(f"no operator {name}")
            await self.audit.add(
                tx, actor=actor, action="operator.unlocked", subject=name, details={}, now=now
            )

    async def lock(self, name: str, *, until: float, now: float, actor: str) -> int:
        """An admin's lock: no login until ``until`` and every live token revoked, together; how many
        tokens were revoked (the broker ends their connections, broker.operator_links)."""
        async with self.db.write() as tx:
            if not await repo_operators.lock(tx, name, until=until):
                raise NotFound(f"no operator {name}")
            revoked = await repo_operators.revoke_tokens_of(tx, name, now=now)
            await self.audit.add(
                tx,
                actor=actor,
                action="operator.locked",
                subject=name,
                details={"until": until, "tokens_revoked": revoked},
                now=now,
            )
        return revoked

    async def set_disabled(self, name: str, *, disabled: bool, now: float, actor: str) -> None:
        """Disable (or re-enable) an account; disabling also revokes its live tokens, together."""
        async with self.db.write() as tx:
            if not await repo_operators.set_disabled(tx, name, disabled=disabled):
                raise NotFound(f"no operator {name}")
            if disabled:
                await repo_operators.revoke_tokens_of(tx, name, now=now)
            await self.audit.add(
                tx,
                actor=actor,
                action="operator.disable" if disabled else "operator.enable",
                subject=name,
                details={},
                now=now,
            )

    async def store_token(self, token_hash: str, name: str, *, now: float, expires_at: float) -> None:
        async with self.db.write() as tx:
            await repo_operators.insert_token(tx, token_hash, name, now=now, expires_at=expires_at)

    async def get_token(self, token_hash: str) -> tuple[str, float, float | None] | None:
        """``(name, expires_at, revoked_at)`` or None."""
        async with self.db.read() as tx:
            return await repo_operators.get_token(tx, token_hash)

    async def by_token(self, token_hash: str) -> tuple[OperatorRecord, float, float | None] | None:
        """``(account, expires_at, revoked_at)`` behind a token, or None; one SELECT."""
        async with self.db.read() as tx:
            return await repo_operators.operator_by_token(tx, token_hash)

    async def revoke_token(self, token_hash: str, *, now: float) -> bool:
        """Logout: True if a live token was revoked. Audited as ``operator.logout``."""
        async with self.db.write() as tx:
            name = await repo_operators.live_token_owner(tx, token_hash)
            if name is None:
                return False
            await repo_operators.revoke_token(tx, token_hash, now=now)
            await self.audit.add(
                tx, actor=f"operator:{name}", action="operator.logout", subject=name, details={}, now=now
            )
        return True
