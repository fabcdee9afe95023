"""Signed audit checkpoints outside the database: what catches a cut tail with a moved head.

Inside the database, someone who deletes the newest audit rows and sets ``meta.audit_head`` to
the last surviving row leaves a chain that is whole: every remaining MAC is genuine. Only a
record kept elsewhere can show that entries existed beyond it. So the broker signs
``(seq, hash, time)`` of its verified head with the audit checkpoint key (Ed25519, derived from
the 0600 audit key, :mod:`broker.auditkey`) and appends it, one JSON line each, to
``audit-checkpoints.jsonl`` in the data dir (opened ``O_APPEND``) and to its log — at start, every
``audit_checkpoint_interval`` seconds while entries are added, and at shutdown.
``python -m broker audit verify --checkpoints FILE`` then requires every checkpointed entry to be
in the database with the same MAC: a truncated tail or a recomputed chain fails (docs/audit.md).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.text import safe_text

from .audit import BREAK_ACTION, ChainReport
from .auditkey import AuditKey
from .storage.services import AuditLog

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "audit-checkpoints.jsonl"
"""Name of the append-only checkpoint file in the data dir."""

MAX_CHECKPOINT_LINE = 1024
"""Longest line read from a checkpoint file; longer lines are reported, not parsed."""

_DOMAIN = b"isp-remote-support audit checkpoint v1\n"

LOG_MARKER = "audit checkpoint "
"""What precedes each checkpoint's JSON in the broker's log."""

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: str
    time: float


def _signed_bytes(seq: int, digest: str, time: float) -> bytes:
    return _DOMAIN + json.dumps([seq, digest, repr(float(time))], separators=(",", ":")).encode()


def checkpoint_line(key: AuditKey, checkpoint: Checkpoint) -> str:
    signature = key.signing.sign(_signed_bytes(checkpoint.seq, checkpoint.hash, checkpoint.time))
    return json.dumps(
        {
            "seq": checkpoint.seq,
            "hash": checkpoint.hash,
            "time": checkpoint.time,
            "sig": base64.b64encode(signature).decode("ascii"),
        },
        separators=(",", ":"),
    )


def append_line(path: Path, line: str) -> None:
    """Append one line and fsync; the file is created 0600 and never rewritten."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
    try:
        os.write(fd, (line + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_line(line: str, public: Ed25519PublicKey) -> Checkpoint:
    """One checkpoint, its signature verified; ``ValueError`` says what is wrong."""
    if len(line) > MAX_CHECKPOINT_LINE:
        raise ValueError("line too long")
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(value, dict) or set(value) != {"seq", "hash", "time", "sig"}:
        raise ValueError("not a checkpoint")
    seq, digest, time, sig = value["seq"], value["hash"], value["time"], value["sig"]
    if (
        type(seq) is not int
        or not isinstance(digest, str)
        or isinstance(time, bool)
        or not isinstance(time, int | float)
        or not isinstance(sig, str)
    ):
        raise ValueError("malformed field")
    try:
        public.verify(base64.b64decode(sig, validate=True), _signed_bytes(seq, digest, time))
    except (binascii.Error, ValueError, InvalidSignature):
        raise ValueError("signature does not verify (forged or edited)") from None
    return Checkpoint(seq=seq, hash=digest, time=float(time))


async def verify_checkpoints(
    lines: list[str], public: Ed25519PublicKey, hash_at: Callable[[int], Awaitable[str | None]]
) -> tuple[int, list[str]]:
    """Compare the database with every checkpoint; returns (checkpoints checked, problems).

    ``lines`` are a checkpoint file's, or a log's (each checkpoint after :data:`LOG_MARKER`).
    """
    problems: list[str] = []
    checked = 0
    # The broker's log works too: its checkpoint lines carry LOG_MARKER, every other line is skipped.
    is_log = any(LOG_MARKER in raw for raw in lines)
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if LOG_MARKER in line:
            line = line.split(LOG_MARKER, 1)[1]
        elif is_log or not line:
            continue
        try:
            checkpoint = parse_line(line, public)
        except ValueError as exc:
            problems.append(f"checkpoint line {number}: {exc}")
            continue
        checked += 1
        stored = await hash_at(checkpoint.seq)
        if stored is None:
            problems.append(
                f"checkpoint line {number}: entry {checkpoint.seq} is missing from the database"
                " (the log was cut short)"
            )
        elif stored != checkpoint.hash:
            problems.append(
                f"checkpoint line {number}: entry {checkpoint.seq} differs from the signed checkpoint"
                " (the chain was rewritten or recomputed)"
            )
    return checked, problems


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


async def verify_audit_and_checkpoints(
    audit: AuditLog, public: Ed25519PublicKey, path: Path, *, required: bool
) -> tuple[ChainReport, str]:
    """The chain (``audit.verify``), then every checkpoint in ``path`` against it.

    ``required``: the file was named by the user, so a missing one is a problem; the data dir's own
    file is checked when it exists. Returns the report (checkpoint problems added) and a note
    saying what was checked.
    """
    report = await audit.verify()
    if not required and not path.exists():
        return report, "no checkpoint file"
    try:
        lines = read_lines(path)
    except OSError as exc:
        report.add(f"cannot read the checkpoint file {path}: {exc.strerror}")
        return report, "no checkpoints"
    checked, problems = await verify_checkpoints(lines, public, audit.hash_at)
    for problem in problems:
        report.add(problem)
    if checked == 0:
        report.add(f"the checkpoint file {path} holds no valid checkpoint")
    return report, f"{checked} signed checkpoints from {path}"


class Checkpointer:
    """The broker's side: write a checkpoint when the head moved; check the last one at start."""

    def __init__(self, audit: AuditLog, key: AuditKey, path: Path) -> None:
        self.audit = audit
        self.key = key
        self.path = path
        self._last: tuple[int, str] | None = None

    async def check_last(self, now: float) -> bool:
        """At start: is the database at least as far as the last checkpoint in the file?

        A database restored or cut behind it is recorded as an ``audit.break`` entry and logged;
        the chain then goes on from the damaged state without pretending it is whole.
        """
        try:
            lines = await asyncio.to_thread(read_lines, self.path)
        except FileNotFoundError:
            return True
        except OSError as exc:
            log.error("cannot read audit checkpoints %s: %s", self.path, exc.strerror)
            return False
        last: Checkpoint | None = None
        for line in reversed(lines):
            try:
                last = parse_line(line.strip(), self.key.public)
            except ValueError:
                continue
            break
        if last is None:
            return True
        stored = await self.audit.hash_at(last.seq)
        if stored == last.hash:
            return True
        reason = f"entry {last.seq} of the last signed checkpoint is " + (
            "missing: the log was cut short" if stored is None else "different: the chain was rewritten"
        )
        log.error("AUDIT LOG DAMAGED: %s", safe_text(reason))
        await self.audit.append(
            actor="broker",
            action=BREAK_ACTION,
            subject="audit",
            details={"reason": reason, "checkpoint": [last.seq, last.hash]},
            now=now,
        )
        return False

    async def write(self, now: float) -> Checkpoint | None:
        """Sign and append the current head, unless it has not moved since the last one."""
        head = await self.audit.head()
        if head is None or head == self._last:
            return None
        checkpoint = Checkpoint(seq=head[0], hash=head[1], time=now)
        line = checkpoint_line(self.key, checkpoint)
        try:
            await asyncio.to_thread(append_line, self.path, line)  # fsync: off the loop
        except OSError as exc:
            log.error("cannot write audit checkpoint to %s: %s", self.path, exc.strerror)
        log.info("%s%s", LOG_MARKER, line)
        self._last = head
        return checkpoint
