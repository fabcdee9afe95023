"""The admin commands of ``python -m broker`` (split from :mod:`broker.cli`): each one awaits
:class:`broker.storage.Storage`, so they work on SQLite and on PostgreSQL alike (docs/storage.md)."""

from __future__ import annotations

import argparse
import getpass
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from protocol.text import safe_text

from .auditkey import load_or_create_audit_key
from .config import DAY, BrokerConfig
from .enrollment import issue_token
from .errors import NotFound
from .pki import load_pki, read_ca_fingerprint
from .storage import Storage

if TYPE_CHECKING:
    from .cluster.node import CutPublisher, CutReason
from .store import SubscriberStatus

MAX_SUSPENSION_DAYS = 183  # 第18条: suspension for up to 6 months


def _fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError, TypeError):  # an edited row: show it, don't crash
        return f"(bad time {t!r:.40})"


def _s(text: str) -> str:
    """Every string from an agent, a subscriber or an admin is shown through the one rule
    (protocol.text): no escape sequence, bell or bidi override reaches the admin's terminal."""
    return safe_text(text, max_chars=500)


def _actor() -> str:
    try:
        return f"admin:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry in some containers
        return "admin"


def _write_enroll_file(path: Path, url: str, contract_id: str, token: str, fingerprint: str) -> None:
    """The file format agent/desktop/enrollfile.py reads (isp-remote-support-enroll/1)."""
    from certs import write_secret_file

    values = {"format": "isp-remote-support-enroll/1", "broker": url, "contract_id": contract_id}
    values |= {"token": token, "ca_fingerprint": f"sha256:{fingerprint}"}
    write_secret_file(path, json.dumps(values, indent=2).encode() + b"\n")


CUT_COMMANDS = {("cert", "revoke"), ("subscriber", "terminate"), ("subscriber", "suspend")}
"""Admin commands after which the agent's connection is cut on whichever broker holds it."""


async def _cut(
    publisher: CutPublisher | None,
    out: TextIO,
    *,
    serials: tuple[str, ...] = (),
    contract_id: str | None = None,
    reason: CutReason,
) -> None:
    """After the transaction committed: with ``--nats`` / ``$BROKER_NATS``, tell every broker to close
    the agent's connection now (docs/cluster.md §8); without, or when NATS does not answer, the
    brokers' revocation poll does it within its interval."""
    if publisher is None:
        return
    if await publisher.publish(serials=serials, contract_id=contract_id, reason=reason):
        print("the brokers were told to cut the connection now", file=out)
    else:
        print("NATS did not answer: the brokers' revocation poll will cut the connection", file=out)


async def admin(args: argparse.Namespace, storage: Storage, data_dir: Path, out: TextIO) -> int:
    """One admin command against an open storage. A command that cuts an agent connects to NATS first
    (meanwhile the transaction runs) and publishes right after its commit."""
    publisher: CutPublisher | None = None
    nats_url: str | None = getattr(args, "nats", None)
    if nats_url and (args.command, getattr(args, "action", None)) in CUT_COMMANDS:
        from .cluster.node import CutPublisher

        publisher = CutPublisher(nats_url)
        await publisher.start()
    try:
        return await _admin(args, storage, data_dir, out, publisher)
    finally:
        if publisher is not None:
            await publisher.close()


async def _admin(
    args: argparse.Namespace, storage: Storage, data_dir: Path, out: TextIO, publisher: CutPublisher | None
) -> int:
    now = time.time()
    actor = _actor()
    if args.command == "subscriber":
        if args.action in ("add", "token"):
            if args.action == "add":
                await storage.subscribers.add(args.contract_id, now=now, actor=actor)
            fingerprint = read_ca_fingerprint(data_dir)
            if fingerprint is None:  # the broker never ran: create the CA now so the command is complete
                fingerprint = load_pki(BrokerConfig(data_dir=data_dir), now=datetime.now(UTC)).ca.fingerprint
            token = await issue_token(
                storage, args.contract_id, now=now, ttl=args.token_days * DAY, actor=actor
            )
            url = await storage.meta.get("public_url") or BrokerConfig(data_dir=data_dir).url
            print(f"contract: {args.contract_id}", file=out)
            print(f"token (one-time, expires {_fmt_time(now + args.token_days * DAY)}): {token}", file=out)
            print("give the subscriber this command:", file=out)
            print(
                f"python -m agent enroll --broker {url} --contract-id={args.contract_id}"
                # "=" keeps a token that starts with "-" from being read as an option
                f" --token={token} --ca-fingerprint sha256:{fingerprint}",
                file=out,
            )
            if args.enroll_file is not None:
                _write_enroll_file(args.enroll_file, url, args.contract_id, token, fingerprint)
                print(f"enrollment file for the desktop app: {args.enroll_file}", file=out)
            return 0
        if args.action == "list":
            print(f"{'contract':<24} {'status':<11} {'since':<21} until", file=out)
            for s in await storage.subscribers.list_all():
                print(
                    f"{_s(s.contract_id):<24} {s.status.value:<11} {_fmt_time(s.status_changed_at):<21}"
                    f" {_fmt_time(s.suspended_until)}",
                    file=out,
                )
            return 0
        if args.action == "suspend":
            days = min(max(args.days, 0.0), MAX_SUSPENSION_DAYS)
            await storage.subscribers.set_status(
                args.contract_id,
                SubscriberStatus.SUSPENDED,
                now=now,
                actor=actor,
                until=now + days * DAY,
                reason=args.reason,
            )
            print(f"{args.contract_id} suspended until {_fmt_time(now + days * DAY)}", file=out)
            await _cut(publisher, out, contract_id=args.contract_id, reason="suspended")
            return 0
        if args.action == "resume":
            await storage.subscribers.set_status(
                args.contract_id, SubscriberStatus.ACTIVE, now=now, actor=actor
            )
            print(f"{args.contract_id} active", file=out)
            return 0
        if args.action == "terminate":
            revoked = await storage.subscribers.set_status(
                args.contract_id, SubscriberStatus.TERMINATED, now=now, actor=actor, reason=args.reason
            )
            print(
                f"{args.contract_id} terminated; revoked certificates: {', '.join(revoked) or 'none'}",
                file=out,
            )
            await _cut(publisher, out, contract_id=args.contract_id, reason="terminated")
            return 0
    if args.command == "cert":
        if args.action == "revoke":
            serial = args.serial.lower().removeprefix("0x").replace(":", "")
            if not await storage.certificates.revoke(serial, now=now, actor=actor, reason=args.reason):
                print(f"certificate {serial} was already revoked", file=out)
            else:
                print(f"certificate {serial} revoked", file=out)
            await _cut(publisher, out, serials=(serial,), reason="revoked")
            return 0
        if args.action == "list":
            for c in await storage.certificates.list_all():
                state = f"revoked {_fmt_time(c.revoked_at)}" if c.revoked_at else "valid"
                print(
                    f"{_s(c.serial)} {_s(c.contract_id)} {_s(c.machine_name)}"
                    f" until {_fmt_time(c.not_after)} {state}",
                    file=out,
                )
            return 0
    if args.command == "agents":
        print(f"{'serial':<40} {'contract':<20} {'machine':<20} {'state':<8} last seen", file=out)
        for a in await storage.presence.list_agents():
            state = "revoked" if a.revoked else ("online" if a.online else "offline")
            seen = _fmt_time(a.last_seen)
            print(
                f"{_s(a.serial):<40} {_s(a.contract_id):<20} {_s(a.machine_name):<20} {state:<8} {seen}",
                file=out,
            )
        return 0
    if args.command == "operator":
        return await _operator(args, storage, data_dir, out, now=now, actor=actor)
    if args.command == "inventory":
        return await _inventory(args, storage, data_dir, out, now=now, actor=actor)
    if args.command == "audit":
        if args.action == "receipts":
            return await _receipts(args.session_id, storage, out)
        if args.action == "verify":
            return await _verify(storage, data_dir, args.checkpoints, out)
        if args.action == "log":
            for e in await storage.audit.entries(subject=args.subject):
                details = json.dumps(e.details, ensure_ascii=False, sort_keys=True)
                print(
                    f"{e.seq:>6} {_fmt_time(e.at)} {_s(e.actor):<16} {_s(e.action):<22} {_s(e.subject)}"
                    f" {_s(details)}",
                    file=out,
                )
            return 0
    raise NotFound(f"unknown command {args.command}")


async def _operator(
    args: argparse.Namespace, storage: Storage, data_dir: Path, out: TextIO, *, now: float, actor: str
) -> int:
    from .datakeys import DataKeyring
    from .operators import OperatorAccounts

    accounts = OperatorAccounts(storage, DataKeyring.open(data_dir / "keys"))
    if args.action == "add":
        created = await accounts.create(
            args.name, role=args.role, display_name=args.display_name or args.name, now=now, actor=actor
        )
        print(f"operator: {created.name} ({args.role})", file=out)
        print(
            f"initial password (one-time, must be changed at first login): {created.initial_password}",
            file=out,
        )
        print(f"TOTP provisioning URI (scan into an authenticator app): {created.totp_uri}", file=out)
        return 0
    if args.action == "list":
        for op in await storage.operators.list_all():
            locked = (
                f" locked until {_fmt_time(op.locked_until)}"
                if op.locked_until and op.locked_until > now
                else ""
            )
            print(f"{_s(op.name):<20} {_s(op.role):<10} {_s(op.display_name)}{locked}", file=out)
        return 0
    if args.action == "unlock":
        await accounts.unlock(args.name, now=now, actor=actor)
        print(f"{args.name} unlocked", file=out)
        return 0
    if args.action == "lock":
        revoked = await accounts.lock(args.name, seconds=max(args.minutes, 0.0) * 60, now=now, actor=actor)
        print(f"{_s(args.name)} locked for {args.minutes:g} minutes; {revoked} login(s) ended", file=out)
        return 0
    if args.action in ("disable", "enable"):
        await accounts.set_disabled(args.name, disabled=args.action == "disable", now=now, actor=actor)
        print(f"{_s(args.name)} {args.action}d", file=out)
        return 0
    raise NotFound(f"unknown operator action {args.action}")


async def _inventory(
    args: argparse.Namespace, storage: Storage, data_dir: Path, out: TextIO, *, now: float, actor: str
) -> int:
    from .datakeys import DataKeyring
    from .inventory import InventoryVault

    if args.action == "purge":
        cutoff = now - args.retention_days * DAY
        purged = await storage.inventory.purge(terminated_before=cutoff, now=now, actor=actor)
        print(
            f"purged inventory of {len(purged)} terminated contract(s): {', '.join(purged) or '-'}", file=out
        )
        return 0
    vault = InventoryVault(DataKeyring.open(data_dir / "keys"))
    record = await storage.inventory.latest(args.contract_id)
    if record is None:
        print(f"no inventory for {args.contract_id}", file=out)
        return 1
    print(
        f"contract {_s(record.contract_id)}, session {_s(record.session_id)},"
        f" received {_fmt_time(record.at)}",
        file=out,
    )
    for item in vault.items(record):
        value = (
            json.dumps(item.value, ensure_ascii=False) if item.available else f"(unavailable: {item.reason})"
        )
        print(f"  {_s(item.item):<16} {_s(value)}", file=out)
    credentials = vault.credentials(record)
    if credentials is not None:
        if args.reveal:
            await storage.audit.append(
                actor=actor,
                action="inventory.reveal",
                subject=record.session_id,
                details={"contract": record.contract_id, "inventory": record.id},
                now=now,
            )
            print(f"  router login     {_s(credentials.account)} / {_s(credentials.password)}", file=out)
        else:
            print("  router login     (stored encrypted; --reveal shows it, and is audited)", file=out)
    return 0


async def _verify(storage: Storage, data_dir: Path, checkpoints: Path | None, out: TextIO) -> int:
    """The chain, then every signed checkpoint against it; exit 1 on any problem, never a traceback."""
    from .checkpoints import CHECKPOINT_FILE, verify_audit_and_checkpoints

    report, note = await verify_audit_and_checkpoints(
        storage.audit,
        load_or_create_audit_key(data_dir).public,
        checkpoints if checkpoints is not None else data_dir / CHECKPOINT_FILE,
        required=checkpoints is not None,
    )
    problems = list(report.problems)
    if report.omitted:
        problems.append(f"… and {report.omitted} more problems")
    if not problems:
        print(f"audit chain OK ({report.checked} entries; {note})", file=out)
        return 0
    print(f"audit chain BROKEN ({report.checked} entries checked; {note}):", file=out)
    for problem in problems:
        print(f"  {safe_text(problem)}", file=out)
    return 1


async def _receipts(session_id: str, storage: Storage, out: TextIO) -> int:
    """Print and check each consent receipt of a session (broker.receipts); exit 1 on any finding."""
    from .receipts import audit_session_receipts

    audit = await audit_session_receipts(storage, session_id)
    for line in audit.lines:  # each line names the session it was checked for
        print(safe_text(line), file=out)
    for finding in audit.findings:
        print(
            f"FINDING session={safe_text(session_id)} agent={safe_text(audit.serial or '?')}"
            f" {safe_text(finding)}",
            file=out,
        )
    return 1 if audit.findings else 0
