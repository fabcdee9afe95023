"""The broker's configuration: one frozen dataclass, a docstring per field (aioquic style)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from protocol import DEFAULT_LIMITS, Limits
from wire.gate import DEFAULT_MAX_UNAUTHENTICATED
from wire.slots import DEFAULT_MAX_HANDSHAKES

from .sessions import SessionRules

APP_NAME = "isp-remote-support-broker"
DAY = 86_400.0
DEFAULT_METRICS_FROM = ("127.0.0.1/8", "::1")
"""Who may read ``GET /metrics`` unless configured: this machine only (docs/cluster.md §3)."""


def default_data_dir() -> Path:
    """Per-OS data directory, e.g. ``~/.local/share/isp-remote-support-broker`` on Linux."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    """Holds ``broker.sqlite3``, the CA (``ca.pem``, encrypted ``ca-key.pem``), the server certificate."""

    host: str = "127.0.0.1"
    """Address of the one TLS listener. Agents only ever connect out to it (別記2: no inbound port)."""

    port: int = 8443
    """Port of the listener; 443 in production behind nothing else."""

    server_names: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    """Names and addresses put in the server certificate's SAN; the agent checks the one it dials."""

    public_url: str | None = None
    """``wss://host:port`` printed in enrollment commands; defaults to the listener's address."""

    ca_passphrase_file: Path | None = None
    """File with the CA key's passphrase; else ``BROKER_CA_PASSPHRASE``; else a generated file in
    the data dir (0600) — fine for a single box, move it off the disk of the CA key in production."""

    token_ttl: float = 7 * DAY
    """How long an enrollment token stays usable."""

    node: str = "node-1"
    """This broker's name in presence rows and on the cluster bus (``serve --node-id``); several
    processes on one database need one each."""

    limits: Limits = DEFAULT_LIMITS
    """Per-connection message limits and heartbeat timing."""

    revocation_poll_interval: float = 5.0
    """Seconds between checks that close live connections of certificates revoked meanwhile
    (the admin CLI revokes from another process)."""

    presence_flush_interval: float = 30.0
    """Seconds between batched ``last_seen`` writes for connected agents."""

    tls_read_buffer: int = 2 * 1024
    """Bytes of TLS read buffer per connection: the chunk asyncio reads from the socket at a time.
    asyncio's own is 256 KiB, allocated for every idle agent (2.5 GiB for 10,000); an idle agent's
    heartbeat and its TLS handshake flights fit in 2 KiB, one read each (docs/PERFORMANCE.md)."""

    fd_reserve: int | None = 128
    """File descriptors kept free for the database, NATS, node links and logs: a client connection
    accepted when the process holds ``RLIMIT_NOFILE`` minus this many is closed at once (a reset;
    ``broker_connections_refused_full_total``) instead of letting ``accept()`` fail with EMFILE
    (``wire.listener``). ``None``: no ceiling."""

    tls_ticket_period: float = DAY
    """Seconds each TLS session-ticket key is used, and a ticket's lifetime: every process with this
    data dir uses the same key (``broker.ticketkeys``), so an agent resumes its TLS session at any of
    them after a restart or a failure (half the handshake's CPU). 0: each process its own keys."""

    streaming_read_buffer: int = 256 * 1024
    """TLS read buffer of an agent connection once it streams screen updates (relay throughput)."""

    listen_backlog: int = 2048
    """Pending connections the kernel queues; asyncio's default of 100 overflows when thousands of
    agents reconnect at once after a restart."""

    shutdown_grace: float = 2.0
    """Seconds a stopping broker waits for closing handshakes before it cuts the remaining
    connections: with 10,000 agents the handshakes alone took 9.5 s, time every agent then spent
    failing to reconnect and backing off (docs/PERFORMANCE.md, reconnect storm)."""

    shutdown_records_timeout: float = 30.0
    """Seconds a stopping broker waits for each of its last writes (queued presence and refusal
    records, session summaries, the ``broker.stop`` audit entry and checkpoint) when the database does
    not answer (a table locked by someone else, a stalled connection): then it stops without them and
    logs so, instead of hanging a restart. A write cut this way is rolled back, never half written."""

    max_unauthenticated_per_address: int | None = DEFAULT_MAX_UNAUTHENTICATED
    """Connections one source address may hold open before they authenticate (TLS handshake,
    enrollment, an operator before login); one more is closed before any TLS work and audited
    (``connection.refused``, at most once a minute, with a count). Generous because subscribers
    behind one CGNAT address reconnect together after a restart; an admitted agent does not count.
    ``None``: no cap (docs/hardening.md)."""

    max_handshakes: int | None = DEFAULT_MAX_HANDSHAKES
    """TLS handshakes under way at once in this process (:mod:`wire.slots`); the others wait their
    turn without TLS work, up to 10 s. Keeps a reconnect storm from turning into thousands of
    handshakes that all finish too late (docs/PERFORMANCE.md, "Handshake slots"). ``None``: no limit."""

    enroll_attempts_per_minute: int = 20
    """Enrollment attempts per source address per minute, before any token lookup or CSR parsing."""

    login_attempts_per_minute: int = 20
    """Operator login attempts per source address per minute, checked before the (deliberately slow)
    argon2id verification; the per-account lock after 5 failures is separate."""

    service_hours: str = "09:00-21:00"
    """別記1: support requests are accepted 9:00–21:00 every day; "00:00-00:00" means always."""

    service_timezone: str = "Asia/Tokyo"
    """The zone the service hours are in (Japan time in the seed)."""

    session_rules: SessionRules = field(default_factory=SessionRules)
    """Support code lifetime, consent timeout, reconnection grace, requests per hour (第18条⑤)."""

    operator_lock_after: int = 5
    """Failed logins in a row that lock an operator account."""

    operator_lock_for: float = 900.0
    """Seconds an operator account stays locked after too many failed logins."""

    code_lockout_for: float = 900.0
    """Seconds an operator is locked out of claiming after 10 wrong support codes in a row."""

    operator_check_interval: float = 0.5
    """Seconds between checks that every live operator connection's login still holds (expiry,
    or a lock/disable by the admin CLI in another process); ≤ 1 s from revocation to close."""

    audit_checkpoint_interval: float = 60.0
    """Seconds between signed audit checkpoints (written only when entries were added; also at
    start and at shutdown). A tail cut within the last interval is what a checkpoint can miss;
    the log copy of each checkpoint narrows it further (docs/audit.md)."""

    tick_interval: float = 1.0
    """How often code expiry, consent deadlines and grace periods are checked."""

    # -- cluster (docs/cluster.md) -----------------------------------------------------------------

    reuse_port: bool = False
    """Bind the listener with ``SO_REUSEPORT``: several processes of one node share the port and the
    kernel spreads new connections among them (the light alternative to HAProxy on one node)."""

    proxy_protocol_from: tuple[str, ...] = ()
    """Addresses or networks of the front door (HAProxy ``send-proxy-v2``): connections from them
    must start with a PROXY v2 header, whose client address the limits and the audit then use."""

    metrics_from: tuple[str, ...] = DEFAULT_METRICS_FROM
    """Addresses or networks that may read ``GET /metrics`` (others get 403): loopback only unless
    configured; add the Prometheus server's address."""

    nats_url: str | None = None
    """The cluster bus (``nats://host:4222``); ``None``: one process, no NATS. With it, every process's
    operators see the queue of the whole cluster (docs/cluster.md §7 step 4)."""

    nats_prefix: str = "isp.broker"
    """Subject prefix of this cluster on the bus (``serve --nats-prefix``)."""

    cluster_listen: tuple[str, int] | None = None
    """Where this process listens for node-to-node links (``IP:PORT``). Read once the cluster is
    wired into the server (docs/cluster.md §7)."""

    session_sweep_interval: float = 60.0
    """Seconds between two sweeps of orphaned sessions (``serve --session-sweep``; with ``--nats``
    only): open claimed sessions whose process is gone and whose agent did not come back within the
    grace are ended by a live process (broker/session_sweep.py, docs/cluster.md §6a)."""

    @property
    def url(self) -> str:
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"wss://{host}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "broker.sqlite3"
