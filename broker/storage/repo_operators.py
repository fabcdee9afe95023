"""The operator repository: accounts and their session tokens (what the old synchronous store kept,
in the same form: argon2id hashes, AES-GCM TOTP secret blobs, SHA-256 of bearer tokens)."""

from __future__ import annotations

from typing import Final

from ..operators import OperatorRecord, Role
from .db import Row, Tx

_COLS: Final = (
    "name, display_name, role, password_hash, totp_secret_blob, created_at, password_change_required,"
    " failed_logins, locked_until, last_totp_step, disabled"
)

#: Tokens are deleted this long after they expire.
TOKEN_RETENTION: Final = 86_400.0


def _record(row: Row, prefix: int = 0) -> OperatorRecord:
    r = row[prefix:]
    return OperatorRecord(
        name=r[0],
        display_name=r[1],
        role=r[2],
        password_hash=r[3],
        totp_secret_blob=bytes(r[4]),
        created_at=r[5],
        password_change_required=bool(r[6]),
        failed_logins=int(r[7]),
        locked_until=r[8],
        last_totp_step=None if r[9] is None else int(r[9]),
        disabled=bool(r[10]),
    )


async def insert(
    tx: Tx,
    name: str,
    *,
    display_name: str,
    role: Role,
    password_hash: str,
    totp_secret_blob: bytes,
    now: float,
    password_change_required: bool,
) -> None:
    await tx.execute(
        "INSERT INTO operators(name, display_name, role, password_hash, totp_secret_blob, created_at,"
        " password_change_required) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (name, display_name, role, password_hash, totp_secret_blob, now, int(password_change_required)),
    )


async def get(tx: Tx, name: str, *, lock: bool = False) -> OperatorRecord | None:
    row = await tx.fetchone(
        f"SELECT {_COLS} FROM operators WHERE name = ?{tx.for_update if lock else ''}", (name,)
    )
    return _record(row) if row else None


async def list_all(tx: Tx) -> list[OperatorRecord]:
    return [_record(r) for r in await tx.fetchall(f"SELECT {_COLS} FROM operators ORDER BY name")]


async def set_failures(tx: Tx, name: str, *, failures: int, locked_until: float | None) -> None:
    if locked_until is None:
        await tx.execute("UPDATE operators SET failed_logins = ? WHERE name = ?", (failures, name))
    else:
        await tx.execute(
            "UPDATE operators SET failed_logins = ?, locked_until = ? WHERE name = ?",
            (failures, locked_until, name),
        )


async def consume_totp_step(tx: Tx, name: str, step: int) -> bool:
    """Accept ``step`` if newer than the last accepted one, resetting failures and lock (RFC 6238 §5.2:
    decided by one conditional UPDATE, so two logins with one code cannot both pass)."""
    changed = await tx.execute(
        "UPDATE operators SET last_totp_step = ?, failed_logins = 0, locked_until = NULL"
        " WHERE name = ? AND (last_totp_step IS NULL OR last_totp_step < ?)",
        (step, name, step),
    )
    return changed == 1


async def set_password_hash(tx: Tx, name: str, password_hash: str, *, change_required: bool | None) -> bool:
    if change_required is None:
        changed = await tx.execute(
            "UPDATE operators SET password_hash = ? WHERE name = ?", (password_hash, name)
        )
    else:
        changed = await tx.execute(
            "UPDATE operators SET password_hash = ?, password_change_required = ? WHERE name = ?",
            (password_hash, int(change_required), name),
        )
    return changed == 1


async def unlock(tx: Tx, name: str) -> bool:
    changed = await tx.execute(
        "UPDATE operators SET failed_logins = 0, locked_until = NULL WHERE name = ?", (name,)
    )
    return changed == 1


async def lock(tx: Tx, name: str, *, until: float) -> bool:
    changed = await tx.execute(
        "UPDATE operators SET failed_logins = 0, locked_until = ? WHERE name = ?", (until, name)
    )
    return changed == 1


async def set_disabled(tx: Tx, name: str, *, disabled: bool) -> bool:
    return await tx.execute("UPDATE operators SET disabled = ? WHERE name = ?", (int(disabled), name)) == 1


# -- tokens -----------------------------------------------------------------------------------------


async def insert_token(tx: Tx, token_hash: str, name: str, *, now: float, expires_at: float) -> None:
    """Also drops tokens long expired, so the table stays bounded."""
    await tx.execute("DELETE FROM operator_tokens WHERE expires_at < ?", (now - TOKEN_RETENTION,))
    await tx.execute(
        "INSERT INTO operator_tokens(token_hash, name, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (token_hash, name, now, expires_at),
    )


async def get_token(tx: Tx, token_hash: str) -> tuple[str, float, float | None] | None:
    row = await tx.fetchone(
        "SELECT name, expires_at, revoked_at FROM operator_tokens WHERE token_hash = ?", (token_hash,)
    )
    return (str(row[0]), float(row[1]), row[2]) if row else None


async def operator_by_token(tx: Tx, token_hash: str) -> tuple[OperatorRecord, float, float | None] | None:
    """The account behind a token, with the token's expiry and revocation, in one SELECT."""
    cols = ", ".join(f"o.{c.strip()}" for c in _COLS.split(","))
    row = await tx.fetchone(
        f"SELECT t.expires_at, t.revoked_at, {cols} FROM operator_tokens t JOIN operators o USING (name)"
        " WHERE t.token_hash = ?",
        (token_hash,),
    )
    if row is None:
        return None
    return _record(row, prefix=2), float(row[0]), row[1]


async def live_token_owner(tx: Tx, token_hash: str) -> str | None:
    row = await tx.fetchone(
        "SELECT name FROM operator_tokens WHERE token_hash = ? AND revoked_at IS NULL", (token_hash,)
    )
    return str(row[0]) if row else None


async def revoke_token(tx: Tx, token_hash: str, *, now: float) -> None:
    await tx.execute("UPDATE operator_tokens SET revoked_at = ? WHERE token_hash = ?", (now, token_hash))


async def revoke_tokens_of(tx: Tx, name: str, *, now: float) -> int:
    return await tx.execute(
        "UPDATE operator_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name)
    )
