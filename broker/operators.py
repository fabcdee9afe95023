"""Operator accounts: creation, login with password + TOTP, session tokens, lockout (DESIGN §1, §3).

Operators see subscribers' inventory and screens (第30条 personal data, 第33条 secrecy of communications),
so an operator login is two factors and resists guessing:

- Passwords are stored only as argon2id hashes (RFC 9106; memory-hard, so a stolen database is slow to
  crack on GPUs). The parameters are constructor arguments; a hash made with older parameters is
  replaced at the next successful login (``check_needs_rehash``).
- The second factor is a TOTP code (RFC 6238, 30 s steps, 6 digits, one step of clock drift either way).
  A code is accepted once: RFC 6238 §5.2, "the verifier MUST NOT accept the second attempt of the OTP
  after the successful validation has been issued for the first OTP". The secret is kept encrypted at
  rest (:class:`broker.datakeys.DataKeyring`, ``aad = b"totp:" + name``).
- A new account gets a random one-time password and must change it at first login.
- Unknown name, wrong password, wrong or replayed code: one error code and one message, and an unknown
  name still costs an argon2 verification, so neither the answer nor its timing tells which names exist.
- ``lock_after`` failures in a row lock the account for ``lock_for`` seconds, even against the right
  credentials; every failure and every lock is audited with the peer address (never the password).
- A login yields a bearer token (256 random bits); the store keeps only its SHA-256, so a copied
  database holds no usable token. Tokens last one shift (``token_ttl``) and logout revokes them.

The rules over :class:`broker.storage.Storage` (``storage.operators``): every database call is awaited,
argon2 runs in a worker thread, and no clock is read (``now`` is always passed in). The identity
behind a token is read once per connection (:meth:`OperatorAccounts.admit`, one SELECT) and then kept
in memory, so the check made for every operator message (:meth:`OperatorAccounts.authenticate`) reads
no database; logout drops it at once, and :meth:`OperatorAccounts.refresh` (the broker's operator
watch, every 0.5 s) drops what another process revoked, locked or disabled.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
from typing import TYPE_CHECKING, Final

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from protocol.errors import ErrorCode

from .datakeys import DataKeyError, DataKeyring
from .errors import BrokerError, NotFound, RefusedError
from .operator_records import (
    ROLES,
    LoginResult,
    NewOperator,
    OperatorIdentity,
    OperatorRecord,
    Role,
    hash_token,
    identity_of,
    parse_role,
)

if TYPE_CHECKING:
    from .storage import Storage

log = logging.getLogger("broker.operators")

__all__ = [
    "LOGIN_FAILED_MESSAGE",
    "ROLES",
    "LoginResult",
    "NewOperator",
    "OperatorAccounts",
    "OperatorIdentity",
    "OperatorRecord",
    "Role",
    "hash_token",
    "parse_role",
]


#: The one answer to every failed login (no user enumeration).
LOGIN_FAILED_MESSAGE: Final = "login failed: wrong name, password or code"

#: Operator names appear in audit subjects and on the console; a strict alphabet keeps them unambiguous.
NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9_.@-]{1,64}\Z")

TOTP_ISSUER: Final = "ISP Remote Support"
SHIFT: Final = 8 * 3600.0


def _auth_required() -> RefusedError:
    return RefusedError("not logged in, or the session expired: log in again", code=ErrorCode.AUTH_REQUIRED)


def _totp_aad(name: str) -> bytes:
    return b"totp:" + name.encode("utf-8")


class OperatorAccounts:
    """The operator-account service; see the module docstring for the rules and their sources."""

    def __init__(
        self,
        storage: Storage,
        keyring: DataKeyring,
        *,
        lock_after: int = 5,
        lock_for: float = 900.0,
        token_ttl: float = SHIFT,
        min_password_length: int = 12,
        max_password_length: int = 256,
        initial_password_bytes: int = 18,
        argon2_time_cost: int = 3,
        argon2_memory_cost: int = 65_536,
        argon2_parallelism: int = 4,
        totp_valid_window: int = 1,
        totp_issuer: str = TOTP_ISSUER,
    ) -> None:
        """
        :param lock_after: failed logins in a row that lock the account.
        :param lock_for: seconds the account stays locked (15 minutes).
        :param token_ttl: seconds a login token is valid (8 hours: one shift).
        :param min_password_length: shortest password an operator may choose.
        :param max_password_length: longest accepted (the protocol's ``Password`` limit; bounds the work).
        :param initial_password_bytes: random bytes of a one-time password (18 → 24 URL-safe characters).
        :param argon2_time_cost: argon2id passes (RFC 9106 §4 second recommendation: t=3).
        :param argon2_memory_cost: argon2id memory in KiB (64 MiB, the same recommendation).
        :param argon2_parallelism: argon2id lanes (p=4).
        :param totp_valid_window: TOTP steps of clock drift accepted each way (RFC 6238 §5.2 "at most one
            time step is allowed as the network delay").
        :param totp_issuer: the issuer shown by authenticator apps.
        """
        if lock_after < 1:
            raise ValueError("lock_after must be at least 1")
        self._ops = storage.operators
        self._audit = storage.audit
        self._identities: dict[str, OperatorIdentity] = {}
        """Token hash → identity, for the tokens of live connections."""
        self._pending: set[asyncio.Task[bool]] = set()
        self._keyring = keyring
        self.lock_after = lock_after
        self.lock_for = lock_for
        self.token_ttl = token_ttl
        self.min_password_length = min_password_length
        self.max_password_length = max_password_length
        self.initial_password_bytes = initial_password_bytes
        self.totp_valid_window = totp_valid_window
        self.totp_issuer = totp_issuer
        self._hasher = PasswordHasher(
            time_cost=argon2_time_cost, memory_cost=argon2_memory_cost, parallelism=argon2_parallelism
        )
        self._dummy_hash: str | None = None

    # -- administration ---------------------------------------------------------------------------

    async def create(
        self, name: str, *, role: str, display_name: str | None = None, now: float, actor: str
    ) -> NewOperator:
        """Create an account with a one-time password and a fresh TOTP secret.

        Raises :class:`broker.errors.AlreadyExists` for a taken name, ``RefusedError(INVALID_FIELD)`` for
        a bad name or role.
        """
        if not NAME_PATTERN.match(name):
            raise RefusedError(
                "an operator name is 1-64 characters of A-Z a-z 0-9 _ . @ -", code=ErrorCode.INVALID_FIELD
            )
        checked = parse_role(role)
        display = (display_name or name).strip()
        if not display or len(display) > 255:
            raise RefusedError("a display name is 1-255 characters", code=ErrorCode.INVALID_FIELD)
        password = secrets.token_urlsafe(self.initial_password_bytes)
        secret = pyotp.random_base32()
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        await self._ops.add(
            name,
            display_name=display,
            role=checked,
            password_hash=password_hash,
            totp_secret_blob=self._keyring.encrypt(secret.encode("ascii"), aad=_totp_aad(name)),
            now=now,
            actor=actor,
            password_change_required=True,
        )
        uri = pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=self.totp_issuer)
        return NewOperator(name=name, initial_password=password, totp_uri=uri)

    async def reset_password(self, name: str, *, now: float, actor: str) -> str:
        """Give the account a new one-time password (forgotten password); returns it. The TOTP secret
        and the lock state are unchanged (an admin unlocks separately, on purpose)."""
        if await self._ops.get(name) is None:
            raise NotFound(f"no operator {name}")
        password = secrets.token_urlsafe(self.initial_password_bytes)
        await self._ops.set_password(
            name,
            await asyncio.to_thread(self._hasher.hash, password),
            now=now,
            change_required=True,
            actor=actor,
            action="operator.password_reset",
        )
        return password

    async def unlock(self, name: str, *, now: float, actor: str) -> None:
        """Lift a lockout before it expires (an admin, after checking with the operator)."""
        await self._ops.unlock(name, now=now, actor=actor)

    async def lock(self, name: str, *, seconds: float, now: float, actor: str) -> int:
        """An admin locks an account: no login for ``seconds``, and its live tokens revoked, so every
        open connection of it ends (issue 11). A lock from failed logins does not revoke tokens:
        anyone who knows a name could otherwise throw its operator out of a session."""
        revoked = await self._ops.lock(name, until=now + seconds, now=now, actor=actor)
        self._forget_operator(name)
        return revoked

    async def set_disabled(self, name: str, *, disabled: bool, now: float, actor: str) -> None:
        """Disable an account (an operator who left) without deleting it: the audit log keeps naming
        it, its tokens are revoked at once, and login answers like for an unknown name."""
        await self._ops.set_disabled(name, disabled=disabled, now=now, actor=actor)
        if disabled:
            self._forget_operator(name)

    # -- login ------------------------------------------------------------------------------------

    async def login(self, name: str, password: str, totp_code: str, *, now: float, peer: str) -> LoginResult:
        """Check password and TOTP code; on success return a new token.

        Raises ``RefusedError(LOGIN_FAILED)`` with :data:`LOGIN_FAILED_MESSAGE` for every kind of wrong
        input, ``RefusedError(ACCOUNT_LOCKED, retry_after=…)`` while the account is locked. The failure
        that reaches ``lock_after`` still answers LOGIN_FAILED; the next attempts get ACCOUNT_LOCKED.
        """
        record = await self._ops.get(name)
        if record is None or record.disabled:
            await asyncio.to_thread(self._burn_verify, password)  # same cost: timing reveals nothing
            await self._audit.append(
                actor="broker",
                action="operator.login_failed",
                subject=name,
                details={"peer": peer, "reason": "unknown" if record is None else "disabled"},
                now=now,
            )
            raise RefusedError(LOGIN_FAILED_MESSAGE, code=ErrorCode.LOGIN_FAILED)
        if record.locked_until is not None and now < record.locked_until:
            await self._audit.append(
                actor="broker",
                action="operator.login_refused",
                subject=name,
                details={"peer": peer, "reason": "locked", "until": record.locked_until},
                now=now,
            )
            raise RefusedError(
                "this account is locked after too many failed logins; try later or ask an admin",
                code=ErrorCode.ACCOUNT_LOCKED,
                retry_after=record.locked_until - now,
            )
        reason: str
        if not await asyncio.to_thread(self._verify, record.password_hash, password):
            reason = "password"
        else:
            step, replayed = self._totp_step(record, totp_code, now)
            if step is None:
                reason = "totp_replay" if replayed else "totp"
            else:
                token = secrets.token_urlsafe(32)
                expires_at = now + self.token_ttl
                rehash = (
                    await asyncio.to_thread(self._hasher.hash, password)
                    if self._hasher.check_needs_rehash(record.password_hash)
                    else None
                )
                if await self._ops.record_login_success(
                    name,
                    now=now,
                    totp_step=step,
                    peer=peer,
                    token_hash=hash_token(token),
                    expires_at=expires_at,
                    password_hash=rehash,
                ):
                    result = LoginResult(
                        token=token,
                        expires_at=expires_at,
                        name=record.name,
                        display_name=record.display_name,
                        role=record.role,
                        password_change_required=record.password_change_required,
                    )
                    self.remember(token, result)
                    return result
                reason = "totp_replay"  # another login consumed this step meanwhile
        await self._ops.record_login_failure(
            name, now=now, lock_after=self.lock_after, lock_for=self.lock_for, peer=peer, reason=reason
        )
        raise RefusedError(LOGIN_FAILED_MESSAGE, code=ErrorCode.LOGIN_FAILED)

    async def admit(self, token: str, *, now: float) -> OperatorIdentity:
        """Who holds ``token`` (one SELECT, once per connection); remembered for :meth:`authenticate`.
        ``RefusedError(AUTH_REQUIRED)`` if it is unknown, expired, revoked, or the account disabled."""
        key = hash_token(token)
        found = await self._ops.by_token(key)
        identity = identity_of(found, now)
        if identity is None:
            self._identities.pop(key, None)
            raise _auth_required()
        self._identities[key] = identity
        return identity

    def remember(self, token: str, result: LoginResult) -> None:
        """A fresh login's identity, so the connection's messages need no SELECT."""
        self._identities[hash_token(token)] = OperatorIdentity(
            name=result.name,
            display_name=result.display_name,
            role=result.role,
            expires_at=result.expires_at,
            password_change_required=result.password_change_required,
        )

    def authenticate(self, token: str, *, now: float) -> OperatorIdentity:
        """The identity :meth:`admit` or a login remembered, still valid at ``now``; no database read
        (this runs for every operator message). ``RefusedError(AUTH_REQUIRED)`` otherwise."""
        identity = self._identities.get(hash_token(token))
        if identity is None or now >= identity.expires_at:
            raise _auth_required()
        return identity

    async def refresh(self, live: set[str], *, now: float) -> None:
        """Re-read the tokens of live connections (one SELECT each) and forget the others, so what
        another process revoked, locked or disabled (the admin CLI) is refused within one watch."""
        keys = {hash_token(token) for token in live}
        for key in [k for k in self._identities if k not in keys]:
            del self._identities[key]
        for key in keys & self._identities.keys():
            identity = identity_of(await self._ops.by_token(key), now)
            if identity is None:
                self._identities.pop(key, None)
            else:
                self._identities[key] = identity

    def _forget_operator(self, name: str) -> None:
        for key in [k for k, identity in self._identities.items() if identity.name == name]:
            del self._identities[key]

    def logout(self, token: str, *, now: float) -> None:
        """Forget the token at once (its connections are refused from the next message) and revoke
        it in the database in a task (idempotent; audited as ``operator.logout``)."""
        key = hash_token(token)
        self._identities.pop(key, None)
        task = asyncio.get_running_loop().create_task(self._ops.revoke_token(key, now=now))
        self._pending.add(task)
        task.add_done_callback(self._logged_out)

    def _logged_out(self, task: asyncio.Task[bool]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a logout was not stored: %s", task.exception())

    async def drain(self) -> None:
        """Wait for logouts still being written (at shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def change_password(self, name: str, old: str, new: str, *, now: float) -> None:
        """Replace the password and clear the one-time flag.

        A wrong ``old`` counts as a failed login (a stolen token must not become a password oracle).
        The new one needs ``min_password_length`` characters and must differ from the old one.
        """
        record = await self._ops.get(name)
        if record is None or record.disabled:
            raise RefusedError("not logged in", code=ErrorCode.AUTH_REQUIRED)
        if record.locked_until is not None and now < record.locked_until:
            raise RefusedError(
                "this account is locked after too many failed logins",
                code=ErrorCode.ACCOUNT_LOCKED,
                retry_after=record.locked_until - now,
            )
        if not await asyncio.to_thread(self._verify, record.password_hash, old):
            await self._ops.record_login_failure(
                name,
                now=now,
                lock_after=self.lock_after,
                lock_for=self.lock_for,
                peer="",
                reason="change_password",
            )
            raise RefusedError("the current password is wrong", code=ErrorCode.LOGIN_FAILED)
        if len(new) < self.min_password_length:
            raise RefusedError(
                f"a password needs at least {self.min_password_length} characters",
                code=ErrorCode.INVALID_FIELD,
            )
        if len(new) > self.max_password_length:
            raise RefusedError(
                f"a password has at most {self.max_password_length} characters", code=ErrorCode.INVALID_FIELD
            )
        if hmac.compare_digest(new.encode("utf-8"), old.encode("utf-8")):
            raise RefusedError("the new password must differ from the old one", code=ErrorCode.INVALID_FIELD)
        await self._ops.set_password(
            name,
            await asyncio.to_thread(self._hasher.hash, new),
            now=now,
            change_required=False,
            actor=f"operator:{name}",
        )

    # -- helpers ----------------------------------------------------------------------------------

    def _verify(self, password_hash: str, password: str) -> bool:
        if len(password) > self.max_password_length:
            self._burn_verify("")
            return False
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _burn_verify(self, password: str) -> None:
        """An argon2 verification that always fails, against a hash made with our parameters."""
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        self._verify(self._dummy_hash, password[: self.max_password_length])

    def _totp_step(self, record: OperatorRecord, code: str, now: float) -> tuple[int | None, bool]:
        """``(step, replayed)``: the RFC 6238 time step ``code`` is valid for, within the window, newer
        than the last accepted one; or ``(None, True)`` if it only matches an already used step."""
        try:
            secret = self._keyring.decrypt(record.totp_secret_blob, aad=_totp_aad(record.name)).decode(
                "ascii"
            )
        except (DataKeyError, UnicodeDecodeError) as exc:
            raise BrokerError(
                f"the TOTP secret of {record.name} cannot be read: {exc}", code=ErrorCode.INTERNAL
            ) from exc
        totp = pyotp.TOTP(secret)
        code = code.strip()
        if len(code) != totp.digits or not code.isascii() or not code.isdigit():
            return None, False
        current = int(now) // totp.interval  # RFC 6238 §4: T = floor((now - T0) / X), T0 = 0
        replayed = False
        for step in range(current - self.totp_valid_window, current + self.totp_valid_window + 1):
            if step < 0 or not hmac.compare_digest(totp.generate_otp(step), code):
                continue
            if record.last_totp_step is not None and step <= record.last_totp_step:
                replayed = True
                continue
            return step, False
        return None, replayed
