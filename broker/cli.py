"""``python -m broker``: the server and the admin commands (DESIGN §1: admin uses the broker CLI).

Every command works on a data dir (``--data-dir``, ``BROKER_DATA_DIR``, or the per-OS default);
the CLI and a running broker share the SQLite file, so a revocation here is enforced there within
seconds. Errors print one line with their stable code and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from certs import CertError
from protocol.text import safe_text
from wire.gate import DEFAULT_MAX_UNAUTHENTICATED

from .cluster.options import listen_address, network, node_id
from .config import DAY, DEFAULT_METRICS_FROM, BrokerConfig, default_data_dir
from .enrollment import issue_token
from .errors import BrokerError, NotFound
from .pki import ensure_data_dir, load_pki, read_ca_fingerprint
from .sessions import SessionRules
from .sqlite_store import SQLiteStore
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


def _cap(value: str) -> int:
    """A connection cap: a whole number, 0 for none (argparse turns the ValueError into exit 2)."""
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 (no cap) or more")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m broker", description="Remote-support broker")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ["BROKER_DATA_DIR"]) if os.environ.get("BROKER_DATA_DIR") else None,
        help=f"data directory (default: $BROKER_DATA_DIR or {default_data_dir()})",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the broker (creates CA, certificate, database on first start)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument(
        "--name", action="append", default=None, help="host name or IP for the server certificate"
    )
    serve.add_argument("--public-url", default=None, help="wss://host:port that agents dial")
    serve.add_argument("--ca-passphrase-file", type=Path, default=None)
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument(
        "--hours", default="09:00-21:00", help="service hours, Japan time (別記1); 00:00-00:00 = always open"
    )
    serve.add_argument("--consent-timeout", type=float, default=60.0, help="seconds; no answer = deny")
    serve.add_argument("--grace", type=float, default=30.0, help="seconds a lost side may take to come back")
    serve.add_argument(
        "--restart-grace",
        type=float,
        default=600.0,
        help="seconds a PC that announced a restart (system:restart) may take to come back",
    )
    serve.add_argument("--max-requests-per-hour", type=int, default=5, help="per subscriber (第18条⑤)")
    serve.add_argument("--code-ttl", type=float, default=600.0, help="support code lifetime in seconds")
    serve.add_argument(
        "--tls-read-buffer",
        type=int,
        default=4 * 1024,
        help="TLS read buffer per idle connection in bytes, 4096-1048576 (asyncio's own: 262144)",
    )
    serve.add_argument(
        "--max-unauthenticated-per-address",
        type=_cap,
        default=DEFAULT_MAX_UNAUTHENTICATED,
        metavar="N",
        help="connections one address may hold before they authenticate (default "
        f"{DEFAULT_MAX_UNAUTHENTICATED}, for subscribers behind one CGNAT address); one more is closed "
        "before TLS and audited; 0 = no cap",
    )
    cluster = serve.add_argument_group("cluster (docs/cluster.md)")
    cluster.add_argument(
        "--node-id", default="node-1", type=node_id, help="this process's name (default node-1)"
    )
    cluster.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT: processes share the port")
    cluster.add_argument(
        "--proxy-protocol-from",
        action="append",
        default=[],
        type=network,
        metavar="IP[/BITS]",
        help="front door sending PROXY v2 headers (HAProxy send-proxy-v2); repeat for several",
    )
    cluster.add_argument(
        "--metrics-from",
        action="append",
        default=None,
        type=network,
        metavar="IP[/BITS]",
        help="may read GET /metrics (default: loopback only); repeat for several",
    )
    cluster.add_argument(
        "--nats", default=None, metavar="URL", help="cluster bus nats://host:4222 (not wired yet)"
    )
    cluster.add_argument(
        "--cluster-listen",
        default=None,
        type=listen_address,
        metavar="IP:PORT",
        help="node-to-node links (not wired yet)",
    )

    subscriber = sub.add_parser("subscriber", help="manage subscribers (contracts)").add_subparsers(
        dest="action", required=True
    )
    add = subscriber.add_parser("add", help="register a contract and print its enrollment command")
    add.add_argument("contract_id")
    add.add_argument("--token-days", type=float, default=7.0)
    token = subscriber.add_parser("token", help="issue a new enrollment token (e.g. for a new PC)")
    token.add_argument("contract_id")
    token.add_argument("--token-days", type=float, default=7.0)
    for p in (add, token):  # the desktop app enrolls from it (docs/install.md); 0600: it holds the token
        p.add_argument("--enroll-file", type=Path, default=None, help="also write an enrollment file here")
    subscriber.add_parser("list", help="list subscribers")
    suspend = subscriber.add_parser("suspend", help="suspend the service (第18条, at most 6 months)")
    suspend.add_argument("contract_id")
    suspend.add_argument("--days", type=float, default=30.0)
    suspend.add_argument("--reason", default="")
    resume = subscriber.add_parser("resume", help="end a suspension")
    resume.add_argument("contract_id")
    terminate = subscriber.add_parser("terminate", help="terminate the contract and revoke its certificates")
    terminate.add_argument("contract_id")
    terminate.add_argument("--reason", default="")

    cert = sub.add_parser("cert", help="client certificates").add_subparsers(dest="action", required=True)
    revoke = cert.add_parser("revoke", help="revoke a certificate by serial (client certificate ID)")
    revoke.add_argument("serial")
    revoke.add_argument("--reason", default="revoked by admin")
    cert.add_parser("list", help="list issued certificates")

    sub.add_parser("agents", help="known agents, online or offline, last seen")

    operator = sub.add_parser("operator", help="helpdesk operators").add_subparsers(
        dest="action", required=True
    )
    op_add = operator.add_parser("add", help="create an operator; prints a one-time password and a TOTP URI")
    op_add.add_argument("name")
    op_add.add_argument("--role", choices=("operator", "supervisor", "admin"), default="operator")
    op_add.add_argument("--display-name", default=None)
    operator.add_parser("list", help="list operators")
    op_unlock = operator.add_parser("unlock", help="lift a login lock")
    op_unlock.add_argument("name")
    op_lock = operator.add_parser(
        "lock", help="lock an account now: no login, and its open connections end within a second"
    )
    op_lock.add_argument("name")
    op_lock.add_argument("--minutes", type=float, default=60.0)
    op_disable = operator.add_parser(
        "disable", help="disable an account (operator left): its open connections end within a second"
    )
    op_disable.add_argument("name")
    op_enable = operator.add_parser("enable", help="re-enable a disabled account")
    op_enable.add_argument("name")

    inventory = sub.add_parser("inventory", help="consented inventory (別紙5)").add_subparsers(
        dest="action", required=True
    )
    show_inv = inventory.add_parser("show", help="print a subscriber's latest inventory")
    show_inv.add_argument("contract_id")
    show_inv.add_argument("--reveal", action="store_true", help="also show the router login (audited)")
    purge = inventory.add_parser(
        "purge", help="delete inventory of contracts terminated longer ago than the retention (第32条4)"
    )
    purge.add_argument("--retention-days", type=float, default=90.0)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="action", required=True)
    verify = audit.add_parser(
        "verify", help="verify the keyed chain, and the signed checkpoints (docs/audit.md)"
    )
    verify.add_argument(
        "--checkpoints",
        type=Path,
        default=None,
        help="checkpoint file to check the database against (default: audit-checkpoints.jsonl"
        " in the data dir, if present); a copy kept off the box is the stronger check",
    )
    receipts = audit.add_parser("receipts", help="print a session's consent receipts and verify each")
    receipts.add_argument("session_id")
    show = audit.add_parser("log", help="print entries")
    show.add_argument("--subject", default=None)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    data_dir: Path = args.data_dir or default_data_dir()
    try:
        if args.command == "serve":
            return _serve(args, data_dir)
        ensure_data_dir(data_dir)
        store = SQLiteStore(data_dir / "broker.sqlite3")
        try:
            return _admin(args, store, data_dir, out)
        finally:
            store.close()
    except (BrokerError, CertError) as exc:
        code = exc.code.value if isinstance(exc, BrokerError) else exc.code
        print(f"error [{code}]: {safe_text(str(exc))}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:  # not a database, or damaged beyond what SQLite reads
        print(f"error [internal]: the database cannot be read: {safe_text(str(exc))}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace, data_dir: Path) -> int:
    from .server import Broker

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # websockets logs every connection's open and close at INFO, without saying whose: 20,000
        # anonymous lines for a restart with 10,000 agents. Its warnings and errors still show.
        logging.getLogger("websockets").setLevel(logging.WARNING)
    names = tuple(args.name) if args.name else ("localhost", "127.0.0.1", "::1")
    config = BrokerConfig(
        data_dir=data_dir,
        host=args.host,
        port=args.port,
        server_names=names,
        public_url=args.public_url,
        ca_passphrase_file=args.ca_passphrase_file,
        service_hours=args.hours,
        tls_read_buffer=args.tls_read_buffer,
        max_unauthenticated_per_address=args.max_unauthenticated_per_address or None,
        node=args.node_id,
        reuse_port=args.reuse_port,
        proxy_protocol_from=tuple(args.proxy_protocol_from),
        metrics_from=tuple(args.metrics_from or DEFAULT_METRICS_FROM),
        nats_url=args.nats,
        cluster_listen=args.cluster_listen,
        session_rules=SessionRules(
            code_ttl=args.code_ttl,
            consent_timeout=args.consent_timeout,
            grace=args.grace,
            restart_grace=args.restart_grace,
            max_requests_per_hour=args.max_requests_per_hour,
        ),
    )
    pki = load_pki(config, now=datetime.now(UTC))
    store = SQLiteStore(config.db_path)

    async def run() -> None:
        broker = Broker(config, store, pki)
        await broker.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(
            f"broker listening on {broker.url} (data dir {data_dir})\n"
            f"CA fingerprint sha256:{pki.ca.fingerprint}\n"
            f"next: python -m broker --data-dir {data_dir} subscriber add CONTRACT_ID",
            flush=True,
        )
        await stop.wait()
        await broker.close()

    try:
        asyncio.run(run())
    finally:
        store.close()
    return 0


def _write_enroll_file(path: Path, url: str, contract_id: str, token: str, fingerprint: str) -> None:
    """The file format agent/desktop/enrollfile.py reads (isp-remote-support-enroll/1)."""
    from certs import write_secret_file

    values = {"format": "isp-remote-support-enroll/1", "broker": url, "contract_id": contract_id}
    values |= {"token": token, "ca_fingerprint": f"sha256:{fingerprint}"}
    write_secret_file(path, json.dumps(values, indent=2).encode() + b"\n")


def _admin(args: argparse.Namespace, store: SQLiteStore, data_dir: Path, out: TextIO) -> int:
    now = time.time()
    actor = _actor()
    if args.command == "subscriber":
        if args.action in ("add", "token"):
            if args.action == "add":
                store.add_subscriber(args.contract_id, now=now, actor=actor)
            fingerprint = read_ca_fingerprint(data_dir)
            if fingerprint is None:  # the broker never ran: create the CA now so the command is complete
                fingerprint = load_pki(BrokerConfig(data_dir=data_dir), now=datetime.now(UTC)).ca.fingerprint
            token = issue_token(store, args.contract_id, now=now, ttl=args.token_days * DAY, actor=actor)
            url = store.get_meta("public_url") or BrokerConfig(data_dir=data_dir).url
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
            for s in store.list_subscribers():
                print(
                    f"{_s(s.contract_id):<24} {s.status.value:<11} {_fmt_time(s.status_changed_at):<21}"
                    f" {_fmt_time(s.suspended_until)}",
                    file=out,
                )
            return 0
        if args.action == "suspend":
            days = min(max(args.days, 0.0), MAX_SUSPENSION_DAYS)
            store.set_subscriber_status(
                args.contract_id,
                SubscriberStatus.SUSPENDED,
                now=now,
                actor=actor,
                until=now + days * DAY,
                reason=args.reason,
            )
            print(f"{args.contract_id} suspended until {_fmt_time(now + days * DAY)}", file=out)
            return 0
        if args.action == "resume":
            store.set_subscriber_status(args.contract_id, SubscriberStatus.ACTIVE, now=now, actor=actor)
            print(f"{args.contract_id} active", file=out)
            return 0
        if args.action == "terminate":
            revoked = store.set_subscriber_status(
                args.contract_id, SubscriberStatus.TERMINATED, now=now, actor=actor, reason=args.reason
            )
            print(
                f"{args.contract_id} terminated; revoked certificates: {', '.join(revoked) or 'none'}",
                file=out,
            )
            return 0
    if args.command == "cert":
        if args.action == "revoke":
            serial = args.serial.lower().removeprefix("0x").replace(":", "")
            if not store.revoke_certificate(serial, now=now, actor=actor, reason=args.reason):
                print(f"certificate {serial} was already revoked", file=out)
            else:
                print(f"certificate {serial} revoked", file=out)
            return 0
        if args.action == "list":
            for c in store.list_certificates():
                state = f"revoked {_fmt_time(c.revoked_at)}" if c.revoked_at else "valid"
                print(
                    f"{_s(c.serial)} {_s(c.contract_id)} {_s(c.machine_name)}"
                    f" until {_fmt_time(c.not_after)} {state}",
                    file=out,
                )
            return 0
    if args.command == "agents":
        print(f"{'serial':<40} {'contract':<20} {'machine':<20} {'state':<8} last seen", file=out)
        for a in store.list_agents():
            state = "revoked" if a.revoked else ("online" if a.online else "offline")
            seen = _fmt_time(a.last_seen)
            print(
                f"{_s(a.serial):<40} {_s(a.contract_id):<20} {_s(a.machine_name):<20} {state:<8} {seen}",
                file=out,
            )
        return 0
    if args.command == "operator":
        return _operator(args, store, data_dir, out, now=now, actor=actor)
    if args.command == "inventory":
        return _inventory(args, store, data_dir, out, now=now, actor=actor)
    if args.command == "audit":
        if args.action == "receipts":
            return _receipts(args.session_id, store, out)
        if args.action == "verify":
            return _verify(store, data_dir, args.checkpoints, out)
        if args.action == "log":
            for e in store.audit_entries(subject=args.subject):
                details = json.dumps(e.details, ensure_ascii=False, sort_keys=True)
                print(
                    f"{e.seq:>6} {_fmt_time(e.at)} {_s(e.actor):<16} {_s(e.action):<22} {_s(e.subject)}"
                    f" {_s(details)}",
                    file=out,
                )
            return 0
    raise NotFound(f"unknown command {args.command}")


def _operator(
    args: argparse.Namespace, store: SQLiteStore, data_dir: Path, out: TextIO, *, now: float, actor: str
) -> int:
    from .datakeys import DataKeyring
    from .operators import OperatorAccounts

    accounts = OperatorAccounts(store, DataKeyring.open(data_dir / "keys"))
    if args.action == "add":
        created = accounts.create(
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
        for op in store.list_operators():
            locked = (
                f" locked until {_fmt_time(op.locked_until)}"
                if op.locked_until and op.locked_until > now
                else ""
            )
            print(f"{_s(op.name):<20} {_s(op.role):<10} {_s(op.display_name)}{locked}", file=out)
        return 0
    if args.action == "unlock":
        accounts.unlock(args.name, now=now, actor=actor)
        print(f"{args.name} unlocked", file=out)
        return 0
    if args.action == "lock":
        revoked = accounts.lock(args.name, seconds=max(args.minutes, 0.0) * 60, now=now, actor=actor)
        print(f"{_s(args.name)} locked for {args.minutes:g} minutes; {revoked} login(s) ended", file=out)
        return 0
    if args.action in ("disable", "enable"):
        accounts.set_disabled(args.name, disabled=args.action == "disable", now=now, actor=actor)
        print(f"{_s(args.name)} {args.action}d", file=out)
        return 0
    raise NotFound(f"unknown operator action {args.action}")


def _inventory(
    args: argparse.Namespace, store: SQLiteStore, data_dir: Path, out: TextIO, *, now: float, actor: str
) -> int:
    from .datakeys import DataKeyring
    from .inventory import InventoryVault

    if args.action == "purge":
        cutoff = now - args.retention_days * DAY
        purged = store.purge_inventory(terminated_before=cutoff, now=now, actor=actor)
        print(
            f"purged inventory of {len(purged)} terminated contract(s): {', '.join(purged) or '-'}", file=out
        )
        return 0
    vault = InventoryVault(store, DataKeyring.open(data_dir / "keys"))
    record = store.latest_inventory(args.contract_id)
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
            store.append_audit(
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


def _verify(store: SQLiteStore, data_dir: Path, checkpoints: Path | None, out: TextIO) -> int:
    """The chain, then every signed checkpoint against it; exit 1 on any problem, never a traceback."""
    from .checkpoints import CHECKPOINT_FILE, verify_audit_and_checkpoints

    report, note = verify_audit_and_checkpoints(
        store,
        store.audit_key.public,
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


def _receipts(session_id: str, store: SQLiteStore, out: TextIO) -> int:
    """Print and check each consent receipt of a session (broker.receipts); exit 1 on any finding."""
    from .receipts import audit_session_receipts

    audit = audit_session_receipts(store, session_id)
    for line in audit.lines:  # each line names the session it was checked for
        print(safe_text(line), file=out)
    for finding in audit.findings:
        print(
            f"FINDING session={safe_text(session_id)} agent={safe_text(audit.serial or '?')}"
            f" {safe_text(finding)}",
            file=out,
        )
    return 1 if audit.findings else 0
