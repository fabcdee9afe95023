"""The audit log's hash chain: how an entry's hash is computed and how the chain is verified.

Each entry stores the SHA-256 of the previous entry (DESIGN §6), so a changed row breaks its own
hash and a deleted row breaks the link of the next one; the store also keeps the head (last seq
and hash) in the same transaction, which catches a deleted last row. Pure functions: the store
feeds rows in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    seq: int
    at: float
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def canonical_details(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(
    *, prev_hash: str, seq: int, at: float, actor: str, action: str, subject: str, details_json: str
) -> str:
    """SHA-256 over a canonical JSON array of every field but the hash itself."""
    payload = json.dumps(
        [prev_hash, seq, repr(float(at)), actor, action, subject, details_json],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class ChainReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(
    rows: Iterable[tuple[int, float, str, str, str, str, str, str]],
    *,
    head: tuple[int, str] | None,
) -> ChainReport:
    """Check every row's hash and link; ``rows`` are (seq, at, actor, action, subject,
    details_json, prev_hash, hash) in seq order, as stored. ``head`` is the recorded last entry.
    """
    report = ChainReport()
    expected_prev = GENESIS_HASH
    expected_seq = 1
    last: tuple[int, str] | None = None
    for seq, at, actor, action, subject, details_json, prev_hash, stored in rows:
        report.checked += 1
        if seq != expected_seq:
            report.problems.append(
                f"entry {expected_seq}"
                + (f"–{seq - 1}" if seq - 1 > expected_seq else "")
                + " deleted (sequence jumps to "
                + str(seq)
                + ")"
            )
        if prev_hash != expected_prev:
            report.problems.append(f"entry {seq}: link to the previous entry is broken")
        recomputed = entry_hash(
            prev_hash=prev_hash,
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            details_json=details_json,
        )
        if recomputed != stored:
            report.problems.append(f"entry {seq} ({action}) was changed: its hash does not match")
        expected_prev = stored
        expected_seq = seq + 1
        last = (seq, stored)
    if head is not None and last != head:
        if last is None or last[0] < head[0]:
            report.problems.append(f"entries after {last[0] if last else 0} up to {head[0]} deleted")
        else:
            report.problems.append("the recorded head of the chain does not match the last entry")
    return report
