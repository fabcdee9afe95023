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
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from websockets.http11 import Request

from protocol import CLOSE_POLICY, BinaryReceived, Event, Link, Opened, Received, Rejected
from protocol.errors import ErrorCode
from protocol.messages import (
    AgentStatus,
    Enroll,
    Error,
)
from wire import AsyncConnection, LinkPump, LinkRunner, WireConnection, WireServer
from wire.server import Handler
from wire.tls import harden_server_context, peer_serial

from . import tuning
from .auditkey import load_or_create_audit_key
from .background import BackgroundWriter
from .checkpoints import CHECKPOINT_FILE, Checkpointer
from .config import BrokerConfig
from .core import AgentPeer, SessionCore
from .datakeys import DataKeyring
from .enrollment import enroll
from .errors import BrokerError, RefusedError
from .http_routes import HttpRoutes
from .operator_commands import OperatorCommands
from .operator_links import OperatorLinks
from .operators import OperatorAccounts
from .peers import AgentConnection, SenderPeer
from .pki import Pki
from .policy import AuditThrottle, CodeAttemptGuard, RateLimit, parse_hours
from .relay import Sender
from .session_host import SessionHost
from .session_records import StorageThread, verify_on_own_connection
from .static_files import StaticFiles
from .storage import Storage, keyed_chain, open_storage
from .store import CertificateRecord, Store, SubscriberStatus

log = logging.getLogger("broker")

SOFTWARE = "isp-remote-support-broker/0.1"

HSTS = "max-age=63072000"
"""Strict-Transport-Security on every HTTP answer: two years, as Mozilla's "intermediate" profile
(docs/hardening.md); no includeSubDomains, since the broker may share its domain with other hosts."""


class Broker(HttpRoutes, OperatorCommands):
    """Owns the listener, the live agent connections and the periodic housekeeping tasks."""

    def __init__(
        self, config: BrokerConfig, store: Store, pki: Pki, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.store = store
        self.pki = pki
        self.clock = clock
        self.agents: dict[str, set[AgentConnection]] = {}
        self._seen: set[str] = set()
        self._server: WireServer | None = None
        self._enrollments: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._crl_cache: tuple[int, bytes] | None = None
        self.static = StaticFiles()
        self._closing = False
        # Records nobody waits for (presence, refused connections) are written on a thread of
        # their own, so a locked database never stalls the event loop (docs/hardening.md).
        reopen = getattr(store, "reopen", None)
        self.background = BackgroundWriter(reopen if reopen is not None else lambda: store)
        self._refusal_audits = AuditThrottle()
        self._enroll_attempts = RateLimit(config.enroll_attempts_per_minute, 60.0)
        self._login_attempts = RateLimit(config.login_attempts_per_minute, 60.0)
        self.keyring = DataKeyring.open(config.data_dir / "keys")
        self.accounts = OperatorAccounts(
            store,
            self.keyring,
            lock_after=config.operator_lock_after,
            lock_for=config.operator_lock_for,
        )
        # The store's own key when it has one (the same file, read once), else the data dir's.
        audit_key = getattr(store, "audit_key", None) or load_or_create_audit_key(config.data_dir)
        self.checkpoints = Checkpointer(store, audit_key, config.data_dir / CHECKPOINT_FILE)
        self._audit_key = audit_key
        # The pure session core (broker/core); its host (broker/session_host.py) is built in
        # start(), on the asynchronous storage opened there.
        self.session_core = SessionCore(
            hours=parse_hours(config.service_hours, tz=config.service_timezone),
            code_guard=CodeAttemptGuard(lockout_for=config.code_lockout_for),
            rules=config.session_rules,
        )
        self.storage: Storage | None = None
        self._storage_thread: StorageThread
        self.sessions: SessionHost
        self.operator_links: OperatorLinks

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> WireServer:
        # The session host writes through the asynchronous storage, on the same database file and
        # the same audit chain as the old store (docs/storage.md, "the transition").
        # Until nothing writes through the old store on this loop, the new layer runs on a loop
        # of its own (broker.session_host.StorageThread).
        self._storage_thread = StorageThread()
        self.storage = await self._storage_thread.run(
            open_storage(str(self.config.db_path), chain=keyed_chain(self._audit_key.chain))
        )
        self.sessions = SessionHost(
            self.session_core,
            self.storage,
            keyring=self.keyring,
            clock=self.clock,
            verify_audit=lambda: verify_on_own_connection(
                self.store, self._audit_key.public, self.config.data_dir / CHECKPOINT_FILE
            ),
            run=self._storage_thread.run,
        )
        self.sessions.start()
        self.operator_links = OperatorLinks(self.sessions)
        offline = self.store.mark_node_offline(self.config.node, now=self.clock())
        if offline:
            log.info("marked %d agents of node %s offline after restart", offline, self.config.node)
        tuning.set_tls_read_buffer(self.config.tls_read_buffer)
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
            on_refused=self._audit_connection_refusals,
            response_headers={"Strict-Transport-Security": HSTS},
        )
        await self._server.listen(
            self.config.host,
            self.config.port,
            ssl_context=harden_server_context(self.pki.server_ssl_context()),
            backlog=self.config.listen_backlog,
            reuse_port=self.config.reuse_port,
            proxy_from=self.config.proxy_protocol_from,
        )
        self.store.set_meta("public_url", self.url)
        self.checkpoints.check_last(self.clock())
        self.checkpoints.write(self.clock())
        self._tasks = [
            asyncio.create_task(self._checkpoint_loop()),
            asyncio.create_task(self._operator_watch()),
            asyncio.create_task(self._revocation_watch()),
            asyncio.create_task(self._presence_flush()),
        ]
        return self._server

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
        await self.sessions.close()
        # Thousands of agents drop at once now: one presence update and one audit entry for all of
        # them, instead of a transaction each (docs/PERFORMANCE.md, reconnect storm).
        self._closing = True
        connected = sum(len(c) for c in self.agents.values())
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            # Every peer gets a close frame (1001, going away); thousands of closing handshakes
            # are not waited for beyond ``shutdown_grace``: the rest are cut, and reconnect anyway.
            await self._server.close(self.config.shutdown_grace)
        closed = time.monotonic()
        for task in list(self._enrollments):
            task.cancel()
        self._flush_seen()
        if not await asyncio.to_thread(self.background.close, 30.0):
            log.error("storage thread did not finish its queue in 30 s")
        now = self.clock()
        self.store.mark_node_offline(self.config.node, now=now)
        self.store.append_audit(
            actor="broker",
            action="broker.stop",
            subject=self.config.node,
            details={"disconnected": connected},
            now=now,
        )
        self.checkpoints.write(now)
        if self.storage is not None:
            await self._storage_thread.run(self.storage.close())
            self._storage_thread.stop()
            self.storage = None
        log.info(
            "stopped: %d agent connections closed in %.1f s, records written in %.1f s",
            connected,
            closed - started,
            time.monotonic() - closed,
        )

    # -- WebSocket --------------------------------------------------------------------------------

    def _open(self, conn: WireConnection, request: Request) -> Handler:
        """A WebSocket on one of the paths ``_process_request`` let through was accepted."""
        path = request.path.split("?", 1)[0]
        if path == "/agent":
            return self._agent(conn)
        if path == "/operator":
            return self._operator(conn)
        # /enroll, the one other path _process_request lets through: a few messages, easiest to
        # read as a coroutine.
        stream = AsyncConnection(conn)
        task = asyncio.create_task(self._enrollment(stream))
        self._enrollments.add(task)
        task.add_done_callback(self._enrollments.discard)
        return stream

    async def _enrollment(self, stream: AsyncConnection) -> None:
        try:
            await self._enroll(stream)
        except Exception:  # one connection's bug never takes the broker down
            log.exception("enrollment handler failed")
            with contextlib.suppress(Exception):
                await stream.close(1011, ErrorCode.INTERNAL.value)

    def _link(self, expect: str) -> Link:
        return Link(
            is_client=False,
            role="broker",
            expect_role=expect,  # type: ignore[arg-type]
            now=self.clock(),
            software=SOFTWARE,
            limits=self.config.limits,
        )

    def _audit_refusal(self, action: str, subject: str, code: ErrorCode, peer: str, **extra: Any) -> None:
        """Every refusal is audited, but a client repeating the same one gets one entry a minute
        (with the count), so it cannot grow the log without bound."""
        now = self.clock()
        count = self._refusal_audits.note(f"{action}|{subject}|{code.value}|{peer}", now)
        if count is None:
            return
        details: dict[str, Any] = {"code": code.value, "peer": peer, **extra}
        if count > 1:
            details["count"] = count
        self.background.submit(
            lambda store: store.append_audit(
                actor="broker", action=action, subject=subject, details=details, now=now
            ),
            action,
        )

    def _audit_connection_refusals(self, refused: dict[str, int]) -> None:
        """Connections refused before TLS by the per-address cap (wire.gate): one entry a minute at
        most, with a count per address."""
        details = {"reason": "too_many_unauthenticated", "count": sum(refused.values()), "addresses": refused}
        node, now = self.config.node, self.clock()
        self.background.submit(
            lambda store: store.append_audit(
                actor="broker", action="connection.refused", subject=node, details=details, now=now
            ),
            "connection.refused",
        )

    async def _enroll(self, ws: AsyncConnection) -> None:
        peer = ws.peer
        runner = LinkRunner(ws, self._link("enroll"), clock=self.clock, binary=False)

        async def on_event(event: Event) -> None:
            if isinstance(event, Received) and isinstance(event.message, Enroll):
                request = event.message
                now = self.clock()
                try:
                    if (retry := self._enroll_attempts.check(peer, now)) is not None:
                        raise RefusedError(
                            "too many enrollment attempts from this address",
                            code=ErrorCode.RATE_LIMITED,
                            retry_after=retry,
                        )
                    self._enroll_attempts.record(peer, now)
                    reply = enroll(self.store, self.pki.ca, request, now=now)
                except BrokerError as exc:
                    # A storage failure cannot be audited either (the same store); it is logged.
                    if exc.code is not ErrorCode.STORAGE_UNAVAILABLE:
                        self._audit_refusal("enroll.refused", request.contract_id, exc.code, peer)
                    await runner.send(
                        Error(
                            id=request.id,
                            code=exc.code.value,
                            message=exc.message,
                            retry_after=exc.retry_after,
                        )
                    )
                    return
                log.info("enrolled %s serial %s", request.contract_id, reply.serial)
                await runner.send(reply)
                await runner.close(1000, "enrolled")
            elif isinstance(event, Received):
                await runner.send(Error(code=ErrorCode.UNEXPECTED_MESSAGE.value, message="expected enroll"))

        await runner.run(on_event)

    def _agent(self, ws: WireConnection) -> LinkPump:
        """An agent link, driven from callbacks (no task): thousands of these sit idle."""
        peer = ws.peer
        serial = peer_serial(ws.transport)
        try:
            record = self._admit_agent(serial, peer)
        except RefusedError as exc:  # one ``error`` before any hello, then a policy close (reason: code)
            pump = LinkPump(ws, self._link("agent"), lambda event: None, clock=self.clock)
            pump.send(Error(code=exc.code.value, message=exc.message))
            pump.close(CLOSE_POLICY, exc.code.value)
            return pump
        assert serial is not None  # _admit_agent refuses a connection without a certificate
        ws.authenticated()  # a certificate of ours, admitted: no longer counted against its address
        ws.allow_size(self.config.limits.max_binary_bytes)  # screen updates
        sender = Sender(ws)
        session_peer = AgentPeer(
            peer=SenderPeer(sender),
            serial=serial,
            contract_id=record.contract_id,
            machine_name=record.machine_name,
        )

        def on_event(event: Event) -> None:
            now = self.clock()
            if isinstance(event, Opened):
                self.agents.setdefault(serial, set()).add(conn)
                node = self.config.node
                self.background.submit(
                    lambda store: store.set_online(serial, online=True, now=now, peer=peer, node=node),
                    "agent.connect",
                )
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
                self.sessions.agent_disconnected(session_peer)
                if not connections:
                    del self.agents[serial]
                if not self._closing:  # on shutdown, close() records all of them at once
                    online, now, node = bool(connections), self.clock(), self.config.node
                    self.background.submit(
                        lambda store: store.set_online(serial, online=online, now=now, peer=peer, node=node),
                        "agent.disconnect",
                    )

        pump = self._pump(ws, "agent", sender, on_event, on_lost)
        conn = AgentConnection(
            serial=serial, contract_id=record.contract_id, peer=peer, pump=pump, session_peer=session_peer
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

    def _admit_agent(self, serial: str | None, peer: str) -> CertificateRecord:
        """The agent's certificate record; an audited ``RefusedError`` when it may not connect."""
        if serial is None:
            raise self._agent_refused(
                "-", ErrorCode.CERT_REQUIRED, "a client certificate is required on /agent", peer
            )
        record = self.store.get_certificate(serial)
        if record is None:
            raise self._agent_refused(
                "-",
                ErrorCode.CERT_UNKNOWN,
                "this certificate is not known to the broker",
                peer,
                serial=serial,
            )
        if record.revoked_at is not None:
            raise self._agent_refused(
                record.contract_id,
                ErrorCode.CERT_REVOKED,
                "this certificate has been revoked",
                peer,
                serial=serial,
            )
        subscriber = self.store.get_subscriber(record.contract_id)
        if subscriber is None or subscriber.status is SubscriberStatus.TERMINATED:
            raise self._agent_refused(
                record.contract_id,
                ErrorCode.SUBSCRIBER_TERMINATED,
                "the contract is terminated",
                peer,
                serial=serial,
            )
        return record

    def _agent_refused(
        self, subject: str, code: ErrorCode, message: str, peer: str, **extra: Any
    ) -> RefusedError:
        self._audit_refusal("agent.refused", subject, code, peer, **extra)
        return RefusedError(message, code=code)

    def _agent_message(self, conn: AgentConnection, event: Received) -> None:
        message = event.message
        if isinstance(message, AgentStatus):
            if message.machine_name != conn.machine_name:
                conn.machine_name = message.machine_name
                conn.session_peer.machine_name = message.machine_name
                serial, name = conn.serial, message.machine_name
                self.background.submit(lambda store: store.update_machine_name(serial, name), "machine name")
            conn.display = message.display
        else:  # errors (refused input reports), support requests, session messages
            self.sessions.agent_message(conn.session_peer, message)

    # -- housekeeping -----------------------------------------------------------------------------

    async def _revocation_watch(self) -> None:
        """Close live connections whose certificate was revoked (by the CLI, in another process)."""
        while True:
            await asyncio.sleep(self.config.revocation_poll_interval)
            if not self.agents:
                continue
            revoked = {serial for serial, _ in self.store.revoked_serials()}
            for serial in [s for s in self.agents if s in revoked]:
                log.info("closing connections of revoked certificate %s", serial)
                for conn in list(self.agents.get(serial, ())):
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
                self.operator_links.check(self.accounts, self.clock())
            except Exception:  # a locked database must not stop the watch for good
                log.exception("operator login check failed")

    async def _checkpoint_loop(self) -> None:
        """Signed audit checkpoints outside the database (broker.checkpoints, docs/audit.md)."""
        while True:
            await asyncio.sleep(self.config.audit_checkpoint_interval)
            try:
                self.checkpoints.write(self.clock())
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
            self.background.submit(lambda store: store.touch(serials, now=now), "last seen")
