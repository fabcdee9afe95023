"""The broker's asyncio adapter: one TLS listener, WebSocket paths, HTTP for public files.

Paths (DESIGN §3):

``/enroll``   no client certificate; one ``enroll`` request → ``enrolled`` or ``error``.
``/agent``    client certificate required, checked against our CA at the TLS layer and against
              the revocation list here, on every connection.
``GET /ca.pem``, ``GET /crl.pem``, ``GET /healthz``  plain HTTPS.

Everything protocol-shaped lives in :mod:`protocol`; this module only moves bytes, reads the
clock and the peer certificate, and calls the store. Split by what they hold: the HTTP answers in
:mod:`broker.http_routes`, an operator link's commands in :mod:`broker.operator_commands`, the
connection records in :mod:`broker.peers` (``Broker`` mixes the first two in).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from websockets.http11 import Request

from protocol import CLOSE_POLICY, BinaryReceived, Event, Link, Opened, Received, Rejected
from protocol.errors import ErrorCode
from protocol.messages import (
    AgentStatus,
    Error,
)
from wire import AsyncConnection, LinkPump, WireConnection, WireServer
from wire.server import Handler
from wire.slots import HandshakeSlots
from wire.tasks import stop_task
from wire.tls import harden_server_context, peer_serial, session_resumed

from . import tuning
from .admission import Admission, HeldLink
from .audit import ChainReport
from .auditkey import load_or_create_audit_key
from .background import BackgroundWriter
from .checkpoints import CHECKPOINT_FILE, Checkpointer, verify_audit_and_checkpoints
from .cluster_host import ClusterHost
from .config import BrokerConfig
from .core import AgentPeer, SessionCore
from .datakeys import DataKeyring
from .errors import RefusedError
from .host_metrics import handshake_failed
from .http_routes import HttpRoutes
from .operator_commands import OperatorCommands
from .operator_links import OperatorLinks
from .operators import OperatorAccounts
from .peers import AgentConnection, SenderPeer
from .pki import Pki
from .policy import AuditThrottle, CodeAttemptGuard, parse_hours
from .relay import Sender
from .session_host import SessionHost
from .static_files import StaticFiles
from .storage import Storage, is_storage_failure, keyed_chain, open_storage
from .storage.guards import CodeRules
from .store import PresenceChange
from .ticketkeys import load_ticket_keys, rotate_ticket_keys, share_tickets

log = logging.getLogger("broker")

SOFTWARE = "isp-remote-support-broker/0.1"

HSTS = "max-age=63072000"
"""Strict-Transport-Security on every HTTP answer: two years, as Mozilla's "intermediate" profile
(docs/hardening.md); no includeSubDomains, since the broker may share its domain with other hosts."""


class Broker(ClusterHost, HttpRoutes, OperatorCommands, Admission):
    """Owns the listener, the live agent connections and the periodic housekeeping tasks."""

    storage: Storage
    """The broker's one :class:`broker.storage.Storage`, opened in :meth:`start`, closed in :meth:`close`."""
    background: BackgroundWriter
    checkpoints: Checkpointer

    def __init__(
        self,
        config: BrokerConfig,
        pki: Pki,
        *,
        database: str | Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``database``: a URL or path (docs/storage.md); default ``broker.sqlite3`` in the data dir."""
        self.config = config
        self.database: str | Path = database if database is not None else config.db_path
        self.pki = pki
        self.clock = clock
        self.agents: dict[str, set[AgentConnection]] = {}
        self.agent_count = 0
        """Agent connections held (the sum over ``agents``, kept as they come and go: the metrics and
        the cluster's presence read it every few seconds, so no scan of 10,000+ entries)."""
        self._seen: set[str] = set()
        self._server: WireServer | None = None
        self._enrollments: set[asyncio.Task[None]] = set()
        self._admissions: set[asyncio.Task[None]] = set()
        self.revoked: list[tuple[str, float]] = []
        """Revoked serials and when, re-read every ``revocation_poll_interval`` (the CRL, the watch)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._crl_cache: tuple[int, bytes] | None = None
        self.static = StaticFiles()
        self._closing = False
        self._refusal_audits = AuditThrottle()
        self._cluster_init()  # metrics, the login and enrollment limits (broker.cluster_host)
        self.keyring = DataKeyring.open(config.data_dir / "keys")
        # The keyed HMAC chain (docs/audit.md): its key is a file in the data dir, outside the
        # database, whichever database that is.
        self.audit_key = load_or_create_audit_key(config.data_dir)
        self.tickets = load_ticket_keys(config.data_dir, config.tls_ticket_period)
        self.chain = keyed_chain(self.audit_key.chain)
        # The pure session core (broker/core); its host (broker/session_host.py) is built in
        # start(), on the storage opened there.
        self.session_core = SessionCore(
            hours=parse_hours(config.service_hours, tz=config.service_timezone),
            code_guard=CodeAttemptGuard(lockout_for=config.code_lockout_for),
            rules=config.session_rules,
        )
        self.sessions: SessionHost
        self.operator_links: OperatorLinks

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> WireServer:
        self.storage = await open_storage(self.database, chain=self.chain)
        await self.storage.audit.adopt_key(created=self.audit_key.created)
        self.accounts = OperatorAccounts(
            self.storage,
            self.keyring,
            lock_after=self.config.operator_lock_after,
            lock_for=self.config.operator_lock_for,
        )
        self.checkpoints = Checkpointer(
            self.storage.audit, self.audit_key, self.config.data_dir / CHECKPOINT_FILE
        )
        # self.cluster (the bus, presence, cuts; it marks this node's old presence rows offline),
        # shared limits, metrics and the readiness probe: broker.cluster_host.
        await self._cluster_start()
        self.sessions = SessionHost(
            self.session_core,
            self.storage,
            keyring=self.keyring,
            clock=self.clock,
            verify_audit=self._verify_audit,
            node=self.config.node,
            code_rules=CodeRules(lockout_for=self.config.code_lockout_for),
            metrics=self.metrics,
        )
        self.sessions.start()
        await self._cluster_sessions(self.sessions)
        self.operator_links = OperatorLinks(self.sessions)
        self.operator_links.refused = self.metrics.count_refusal
        await self._refresh_revoked()
        tuning.set_tls_read_buffer(self.config.tls_read_buffer)
        self.background = BackgroundWriter(self.storage, timed=lambda: self.metrics.time_storage("write"))
        self.background.start()
        # No permessage-deflate (the lean server offers no extensions): screen updates are already
        # compressed (PNG/JPEG/zlib), zlib state on every idle connection costs memory, and
        # compressing secrets beside attacker-chosen text invites CRIME-style leaks. The broker
        # sends no heartbeat: agents send WebSocket Ping frames (answered by websockets, counted by
        # wire.LinkPump, no JSON, no store write), the kernel's TCP keepalive refreshes NAT state
        # (wire.keepalive), and a JSON ping from an older agent is still answered (docs/heartbeat.md).
        # Frames before authentication are limited to the largest control message; an admitted
        # agent may send screen updates up to max_binary_bytes (docs/hardening.md).
        self._server = WireServer(
            self._process_request,
            self._open,
            max_size=self.config.limits.max_text_bytes,
            max_unauthenticated_per_address=self.config.max_unauthenticated_per_address,
            handshake_slots=HandshakeSlots(limit=self.config.max_handshakes),
            on_refused=self._audit_connection_refusals,
            on_handshake_failed=handshake_failed(self.metrics),
            response_headers={"Strict-Transport-Security": HSTS},
            fd_reserve=self.config.fd_reserve,
            on_full=self.metrics.count_refused_full,
        )
        self.metrics.watch_slots(self._server.slots)
        tls = harden_server_context(self.pki.server_ssl_context())
        shared = self.tickets is not None and share_tickets(tls, self.tickets, self.clock())
        try:
            await self._server.listen(
                self.config.host,
                self.config.port,
                ssl_context=tls,
                backlog=self.config.listen_backlog,
                reuse_port=self.config.reuse_port,
                proxy_from=self.config.proxy_protocol_from,
            )
        except BaseException:  # the port is taken, …: close what start() opened, so the process exits
            await self._abort_start()
            raise
        self._cluster_listening()
        await self.storage.meta.set("public_url", self.url)
        await self.checkpoints.check_last(self.clock())
        await self.checkpoints.write(self.clock())
        self._tasks = [
            asyncio.create_task(self._checkpoint_loop()),
            asyncio.create_task(self._operator_watch()),
            asyncio.create_task(self._revocation_watch()),
            asyncio.create_task(self._presence_flush()),
        ]
        if shared and self.tickets is not None:
            self._tasks.append(asyncio.create_task(rotate_ticket_keys(tls, self.tickets, self.clock)))
        return self._server

    async def _abort_start(self) -> None:
        await self.sessions.close()
        await self._cluster_close()
        await self.background.close(5.0)
        await self.storage.close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.port

    @property
    def url(self) -> str:
        """The URL agents dial: the configured public URL, else the listener's real address."""
        if self.config.public_url:
            return self.config.public_url
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"wss://{host}:{self.port}"

    async def close(self) -> None:
        started = time.monotonic()
        # In a cluster a claimed session outlives this process: its agent resumes it on another.
        records_timeout = self.config.shutdown_records_timeout
        await self.sessions.close(handoff=self.clustered, timeout=records_timeout)
        # Thousands of agents drop at once now: one presence update and one audit entry for all of
        # them, instead of a transaction each (docs/PERFORMANCE.md, reconnect storm).
        self._closing = True
        connected = self.agent_count
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await stop_task(task, what="broker loop")
        if self._server is not None:
            # Every peer gets a close frame (1001, going away); thousands of closing handshakes
            # are not waited for beyond ``shutdown_grace``: the rest are cut, and reconnect anyway.
            await self._server.close(self.config.shutdown_grace)
        closed = time.monotonic()
        for task in list(self._enrollments):
            task.cancel()
        for task in list(self._admissions):
            task.cancel()
        self._flush_seen()
        await self._cluster_close()
        if not await self.background.close(records_timeout):
            log.error("storage did not finish its queue in %g s", records_timeout)
        try:
            async with asyncio.timeout(records_timeout):  # a cut transaction is rolled back
                await self.accounts.drain()
                now = self.clock()
                await self.storage.presence.mark_node_offline(self.config.node, now=now)
                await self.storage.audit.append(
                    actor="broker",
                    action="broker.stop",
                    subject=self.config.node,
                    details={"disconnected": connected},
                    now=now,
                )
                await self.checkpoints.write(now)
        except TimeoutError:
            log.error(
                "stopping without the final records: the database did not answer in %g s", records_timeout
            )
        except Exception as exc:  # the database is gone: stop anyway (the other nodes mark our agents)
            log.error("stopping without the final records: the database failed (%s)", type(exc).__name__)
        finally:
            await self.storage.close()
        log.info(
            "stopped: %d agent connections closed in %.1f s, records written in %.1f s",
            connected,
            closed - started,
            time.monotonic() - closed,
        )

    async def _verify_audit(self) -> ChainReport:
        """The console's "verify": the chain and the data dir's signed checkpoints (docs/audit.md)."""
        report, _ = await verify_audit_and_checkpoints(
            self.storage.audit, self.audit_key.public, self.config.data_dir / CHECKPOINT_FILE, required=False
        )
        return report

    # -- WebSocket --------------------------------------------------------------------------------

    def _open(self, conn: WireConnection, request: Request) -> Handler:
        """A WebSocket on one of the paths ``_process_request`` let through was accepted."""
        path = request.path.split("?", 1)[0]
        if path == "/agent":  # counted once its certificate is admitted or refused (_agent_admitted)
            return self._agent(conn)
        self.metrics.count_handshake("operator" if path == "/operator" else "enroll", ok=True)
        if path == "/operator":
            return self._operator(conn)
        # /enroll, the one other path _process_request lets through: a few messages, easiest to
        # read as a coroutine.
        stream = AsyncConnection(conn)
        task = asyncio.create_task(self._enrollment(stream))
        self._enrollments.add(task)
        task.add_done_callback(self._enrollments.discard)
        return stream

    def _link(self, expect: str) -> Link:
        return Link(
            is_client=False,
            role="broker",
            expect_role=expect,  # type: ignore[arg-type]
            now=self.clock(),
            software=SOFTWARE,
            limits=self.config.limits,
        )

    def _agent(self, ws: WireConnection) -> Handler:
        """An agent link: its frames wait (:class:`broker.admission.HeldLink`) while its certificate
        and contract are read; then it is driven from callbacks (no task): thousands sit idle."""
        serial = peer_serial(ws.transport)  # read now: the server forgets the peer cert after _open
        return HeldLink(ws, self._agent_admitted(ws, serial), tasks=self._admissions)

    async def _agent_admitted(self, ws: WireConnection, serial: str | None) -> LinkPump:
        peer = ws.peer
        if session_resumed(ws.transport):  # counted refused or not: the record is checked all the same
            self.metrics.tls_resumed.inc()
        try:
            record = await self._admit_agent(serial, peer)
        except RefusedError as exc:  # no certificate, unknown, revoked, …: a policy close
            return self._refused_link(ws, Error(code=exc.code.value, message=exc.message), CLOSE_POLICY)
        except Exception as exc:
            if not is_storage_failure(exc):
                raise  # a bug: HeldLink logs it and closes with 1011
            return self._admission_deferred(ws, exc)
        assert serial is not None  # _admit_agent refuses a connection without a certificate
        self.metrics.count_handshake("agent", ok=True)
        ws.authenticated()  # a certificate of ours, admitted: no longer counted against its address
        ws.allow_size(self.config.limits.max_binary_bytes)  # screen updates
        sender = Sender(ws)
        # The closures below outlive this coroutine for as long as the agent stays connected: they
        # must not hold ``record`` (its certificate PEM alone is ~0.8 KiB per idle agent).
        contract_id = record.contract_id
        session_peer = AgentPeer(
            peer=SenderPeer(sender, counted=self.sessions.relayed.to_agent.inc),
            serial=serial,
            contract_id=contract_id,
            machine_name=record.machine_name,
        )

        def on_event(event: Event) -> None:
            now = self.clock()
            if isinstance(event, Opened):
                held = self.agents.setdefault(serial, set())
                if conn not in held:
                    held.add(conn)
                    self.agent_count += 1
                self.background.submit_presence(
                    PresenceChange(serial=serial, online=True, now=now, peer=peer, node=self.config.node)
                )
                self._presence_changed(serial, contract_id, online=True)
            elif isinstance(event, BinaryReceived):
                if not conn.streaming:  # idle agents keep the small buffer; a streaming one gets room
                    conn.streaming = True
                    tuning.set_connection_read_buffer(ws.transport, self.config.streaming_read_buffer)
                self.sessions.agent_binary(session_peer, event.data)
            elif isinstance(event, Received):
                self._agent_message(conn, event)
            elif isinstance(event, Rejected):
                log.info("agent %s sent a bad message: %s", serial, event.error.code.value)
            self._seen.add(serial)

        def on_lost() -> None:
            sender.close()
            connections = self.agents.get(serial)
            if connections is not None and conn in connections:
                connections.discard(conn)
                self.agent_count -= 1
                self.sessions.agent_disconnected(session_peer)
                if not connections:
                    del self.agents[serial]
                if not self._closing:  # on shutdown, close() records all of them at once
                    online = bool(connections)
                    self.background.submit_presence(
                        PresenceChange(
                            serial=serial, online=online, now=self.clock(), peer=peer, node=self.config.node
                        )
                    )
                    if not online:
                        self._presence_changed(serial, contract_id, online=False)

        pump = self._pump(ws, "agent", sender, on_event, on_lost)
        conn = AgentConnection(
            serial=serial, contract_id=contract_id, peer=peer, pump=pump, session_peer=session_peer
        )
        return pump

    def _pump(
        self,
        ws: WireConnection,
        expect: str,
        sender: Sender,
        on_event: Callable[[Event], None],
        on_lost: Callable[[], None],
        *,
        binary: bool = True,
    ) -> LinkPump:
        """A link driven from callbacks whose frames go out through ``sender`` (bounded, no task)."""
        pump = LinkPump(
            ws,
            self._link(expect),
            on_event,
            clock=self.clock,
            write=sender.write,
            close=sender.close_after,
            on_lost=on_lost,
            binary=binary,
        )
        pump.on_resume = sender.pump
        return pump

    def _agent_message(self, conn: AgentConnection, event: Received) -> None:
        message = event.message
        if isinstance(message, AgentStatus):
            if message.machine_name != conn.machine_name:
                conn.machine_name = message.machine_name
                conn.session_peer.machine_name = message.machine_name
                serial, name = conn.serial, message.machine_name
                self.background.submit(
                    lambda storage: storage.presence.update_machine_name(serial, name), "machine name"
                )
            conn.display = message.display
        else:  # errors (refused input reports), support requests, session messages
            self.sessions.agent_message(conn.session_peer, message)

    # -- housekeeping -----------------------------------------------------------------------------

    async def _refresh_revoked(self) -> None:
        self.revoked = await self.storage.certificates.revoked_serials()

    async def _revocation_watch(self) -> None:
        """Close live connections whose certificate was revoked (by the CLI, in another process),
        and keep the CRL's list current."""
        while True:
            await asyncio.sleep(self.config.revocation_poll_interval)
            try:
                await self._refresh_revoked()
            except Exception:  # a locked or unreachable database must not stop the watch for good
                log.exception("reading revoked certificates failed")
                continue
            if not self.agents:
                continue
            revoked = {serial for serial, _ in self.revoked}
            for serial in revoked & self.agents.keys():  # walks the smaller of the two
                log.info("closing connections of revoked certificate %s", serial)
                for conn in list(self.agents.get(serial, ())):
                    self.metrics.count_refusal(ErrorCode.CERT_REVOKED)
                    conn.pump.send(
                        Error(code=ErrorCode.CERT_REVOKED.value, message="this certificate has been revoked")
                    )
                    conn.pump.close(CLOSE_POLICY, ErrorCode.CERT_REVOKED.value)

    async def _operator_watch(self) -> None:
        """End operator connections whose login expired, or was revoked by another process
        (``operator lock``/``disable`` in the admin CLI): broker.operator_links."""
        while True:
            await asyncio.sleep(self.config.operator_check_interval)
            if not len(self.operator_links):
                continue
            try:
                await self.accounts.refresh(self.operator_links.tokens(), now=self.clock())
                self.operator_links.check(self.accounts, self.clock())
            except Exception:  # a locked database must not stop the watch for good
                log.exception("operator login check failed")

    async def _checkpoint_loop(self) -> None:
        """Signed audit checkpoints outside the database (broker.checkpoints, docs/audit.md)."""
        while True:
            await asyncio.sleep(self.config.audit_checkpoint_interval)
            try:
                await self.checkpoints.write(self.clock())
            except Exception:  # a full disk must not stop the broker; the log says so
                log.exception("audit checkpoint failed")

    async def _presence_flush(self) -> None:
        while True:
            await asyncio.sleep(self.config.presence_flush_interval)
            self._flush_seen()

    def _flush_seen(self) -> None:
        seen, self._seen = self._seen, set()
        if seen:
            serials, now = sorted(seen), self.clock()
            self.background.submit(lambda storage: storage.presence.touch(serials, now=now), "last seen")
