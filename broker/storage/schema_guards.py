"""The tables of migration 3: support codes and the guards (rate windows, lockouts) shared by every
broker process of a cluster (docs/cluster.md). Statement lists per dialect, used by
:data:`broker.storage.migrations.MIGRATIONS`; kept here so that the migration list stays short.

- ``support_codes``: one row per live 6-digit code (DESIGN §5). The code is the primary key, so two
  processes cannot hand out the same live code, and a claim is one conditional ``UPDATE``, so two
  processes cannot both claim it. A row stays until the code's expiry even once claimed (a late claim
  of a claimed code finds it taken, never a newer request that drew the same digits).
- ``limit_keys``: one row per guarded key (``code:op:alice``, ``login:addr:192.0.2.1`` …): consecutive
  failures and the lockout; also the row a transaction locks to serialise everything about its key.
- ``limit_hits``: the events of each key's sliding window (exact, like ``broker.policy.RateLimit``).
"""

from __future__ import annotations


def guard_tables(real: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE support_codes (
    code TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    node TEXT NOT NULL,
    contract_id TEXT NOT NULL,
    issued_at {real} NOT NULL,
    expires_at {real} NOT NULL,
    claimed_at {real},
    claimed_by TEXT
)""",
        "CREATE INDEX support_codes_session ON support_codes(session_id)",
        "CREATE INDEX support_codes_expires ON support_codes(expires_at)",
        f"""CREATE TABLE limit_keys (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until {real},
    touched_at {real} NOT NULL
)""",
        f"CREATE TABLE limit_hits (key TEXT NOT NULL, at {real} NOT NULL)",
        "CREATE INDEX limit_hits_key_at ON limit_hits(key, at)",
        "CREATE INDEX limit_hits_at ON limit_hits(at)",
    )
