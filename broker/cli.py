"""``python -m broker``: the server and the admin commands (DESIGN §1: admin uses the broker CLI).

Every command works on a data dir (``--data-dir``, ``BROKER_DATA_DIR``, or the per-OS default);
the CLI and a running broker share the database (``--database``: the data dir's SQLite file by
default, or PostgreSQL), so a revocation here is enforced there within seconds. Errors print one
line with their stable code and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from certs import CertError
from protocol.text import safe_text
from wire.gate import DEFAULT_MAX_UNAUTHENTICATED
from wire.slots import DEFAULT_MAX_HANDSHAKES

from .auditkey import load_or_create_audit_key
from .cluster.options import listen_address, network, node_id
from .config import DEFAULT_METRICS_FROM, BrokerConfig, default_data_dir
from .errors import BrokerError
from .pki import ensure_data_dir, load_pki
from .sessions import SessionRules
from .ticketkeys import MAX_PERIOD


def _cap(value: str) -> int:
    """A connection cap: a whole number, 0 for none (argparse turns the ValueError into exit 2)."""
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 (no cap) or more")
    return number


def _ticket_period(value: str) -> float:
    """0 (per-process ticket keys) or 1 s to 7 days (RFC 8446's longest ticket)."""
    seconds = float(value)
    if seconds != 0 and not 1 <= seconds <= MAX_PERIOD:
        raise argparse.ArgumentTypeError("must be 0 (off) or 1 to 604800 seconds")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m broker", description="Remote-support broker")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ["BROKER_DATA_DIR"]) if os.environ.get("BROKER_DATA_DIR") else None,
        help=f"data directory (default: $BROKER_DATA_DIR or {default_data_dir()})",
    )
    parser.add_argument(
        "--database",
        default=os.environ.get("BROKER_DATABASE") or None,
        metavar="URL",
        help="sqlite:///path, a path, or postgresql://user@host/db (default: $BROKER_DATABASE or"
        " broker.sqlite3 in the data dir); serve and every admin command use it (docs/storage.md)",
    )
    parser.add_argument(
        "--nats",
        default=os.environ.get("BROKER_NATS") or None,
        metavar="URL",
        help="the cluster bus nats://host:4222 (default: $BROKER_NATS): serve joins the cluster; cert"
        " revoke and subscriber suspend/terminate cut the agent on whichever broker holds it at once",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the broker (creates CA, certificate, database on first start)")
    serve.add_argument(  # also accepted after ``serve``; the same as the global --database
        "--database", default=argparse.SUPPRESS, metavar="URL", help="database URL (see the global option)"
    )
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
    serve.add_argument(
        "--session-sweep",
        type=float,
        default=60.0,
        help="seconds between sweeps of sessions whose process died (cluster only)",
    )
    serve.add_argument("--max-requests-per-hour", type=int, default=5, help="per subscriber (第18条⑤)")
    serve.add_argument("--code-ttl", type=float, default=600.0, help="support code lifetime in seconds")
    serve.add_argument(
        "--tls-read-buffer",
        type=int,
        default=2 * 1024,
        help="TLS read buffer per idle connection in bytes, 1024-1048576 (asyncio's own: 262144)",
    )
    serve.add_argument(
        "--tls-ticket-period",
        type=_ticket_period,
        default=86_400.0,
        metavar="SECONDS",
        help="one TLS ticket key for every process of the data dir, changed this often (a ticket "
        "lives as long); 0 = each process its own keys (docs/cluster.md §5)",
    )
    serve.add_argument(
        "--max-handshakes",
        type=_cap,
        default=DEFAULT_MAX_HANDSHAKES,
        metavar="N",
        help=f"TLS handshakes under way at once (default {DEFAULT_MAX_HANDSHAKES}); the others wait their "
        "turn, so a reconnect storm is served at full speed; 0 = no limit",
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
    cluster.add_argument(  # also accepted before ``serve``; the same as the global --nats
        "--nats",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="cluster bus nats://host:4222 (default: $BROKER_NATS; none: one process, no NATS)",
    )
    cluster.add_argument(
        "--nats-prefix",
        default="isp.broker",
        metavar="PREFIX",
        help="subject prefix on the bus (default isp.broker; clusters sharing one NATS use different ones)",
    )
    cluster.add_argument(
        "--cluster-listen",
        default=None,
        type=listen_address,
        metavar="IP:PORT",
        help="node-to-node links for sessions across processes: this node's address other nodes dial"
        " (certificates from the cluster CA in the data dir)",
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
        return asyncio.run(_run_admin(args, _database(args, data_dir), data_dir, out))
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
        tls_ticket_period=args.tls_ticket_period,
        max_unauthenticated_per_address=args.max_unauthenticated_per_address or None,
        max_handshakes=args.max_handshakes or None,
        node=args.node_id,
        reuse_port=args.reuse_port,
        proxy_protocol_from=tuple(args.proxy_protocol_from),
        metrics_from=tuple(args.metrics_from or DEFAULT_METRICS_FROM),
        nats_url=args.nats,
        nats_prefix=args.nats_prefix,
        cluster_listen=args.cluster_listen,
        session_sweep_interval=args.session_sweep,
        session_rules=SessionRules(
            code_ttl=args.code_ttl,
            consent_timeout=args.consent_timeout,
            grace=args.grace,
            restart_grace=args.restart_grace,
            max_requests_per_hour=args.max_requests_per_hour,
        ),
    )
    pki = load_pki(config, now=datetime.now(UTC))

    async def run() -> None:
        broker = Broker(config, pki, database=_database(args, data_dir))
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

    asyncio.run(run())
    return 0


def _database(args: argparse.Namespace, data_dir: Path) -> str | Path:
    """The database URL of ``--database`` / ``$BROKER_DATABASE``, else the data dir's SQLite file."""
    url: str | None = args.database
    return url if url else data_dir / "broker.sqlite3"


async def _run_admin(args: argparse.Namespace, database: str | Path, data_dir: Path, out: TextIO) -> int:
    """One admin command: open the storage (migrating it), run, close. The chain is the broker's
    keyed HMAC chain, its key the data dir's audit key file (docs/audit.md)."""
    from .cli_admin import admin
    from .storage import keyed_chain, open_storage

    key = load_or_create_audit_key(data_dir)
    storage = await open_storage(database, chain=keyed_chain(key.chain))
    try:
        await storage.audit.adopt_key(created=key.created)
        return await admin(args, storage, data_dir, out)
    finally:
        await storage.close()
