"""The listening sockets and their accept loop, with a ceiling on the process's file descriptors.

A process that runs out of file descriptors fails in the worst way: ``accept()`` fails with
``EMFILE`` while clients keep coming, and asyncio's own accept loop (CPython 3.11) logs a full
traceback for every failed ``accept()`` of a tick, up to its backlog (2,048 for the broker) each
tick, and schedules as many retries. Measured (``bench.cluster_idle``, 20,000 agents on 2 processes,
one killed): the survivor reached the 20,000-descriptor limit and spent two thirds of its CPU
formatting those tracebacks, for minutes, while the agents it could not take waited.

This accept loop takes each connection itself and looks at the descriptor the kernel gave it. Linux
always hands out the lowest free descriptor, so a new socket numbered at or above the ceiling
(the soft ``RLIMIT_NOFILE`` minus ``reserve``) means every descriptor below the ceiling is in use:
the socket is closed at once, before any TLS work, and counted (``on_full``). The limit is read
again at every turn that accepts, so raising it (``prlimit``) takes effect without a restart. A
client refused that way sees its connection reset and retries after its backoff; behind
``SO_REUSEPORT`` or a load balancer its next attempt usually lands on another process. The
reserve keeps descriptors for what the process opens besides client connections (database, NATS,
node links, log files).

``accept()`` failing anyway (another process exhausted the system's table, ``ENFILE``) pauses
accepting for ``retry_delay`` seconds with one log line, not one per attempt.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import struct
from collections.abc import Callable

log = logging.getLogger("wire.listener")

DEFAULT_FD_RESERVE = 128
"""File descriptors kept free for everything but client connections: the database (a PostgreSQL
pool of up to 10, SQLite's files), NATS, one link per other node, log files, the socket being
refused."""

ACCEPTS_PER_TICK = 128
"""Connections taken from one listening socket per event-loop turn (asyncio takes its backlog)."""

RETRY_DELAY = 1.0
"""Seconds without accepting after ``accept()`` itself failed for want of resources."""

WARN_INTERVAL = 60.0
"""Seconds between two log lines about refusals at the ceiling."""

_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


def fd_ceiling(reserve: int | None) -> int | None:
    """The lowest descriptor number a client connection may not have (None: no ceiling)."""
    if reserve is None:
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(1, soft - reserve)


def bind(host: str, port: int, *, backlog: int, reuse_port: bool) -> list[socket.socket]:
    """Listening sockets for every address ``host`` names (as ``loop.create_server`` binds them)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _name, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
            if port == 0:  # several addresses of one name share the port the first one got
                port = int(sock.getsockname()[1])
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener:
    """Accepts on ``sockets`` and hands each admitted connection to ``protocol_factory``'s protocol."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        *,
        fd_reserve: int | None = DEFAULT_FD_RESERVE,
        on_full: Callable[[], None] | None = None,
        accepts_per_tick: int = ACCEPTS_PER_TICK,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self.loop = loop
        self.sockets = sockets
        self.protocol_factory = protocol_factory
        self.fd_reserve = fd_reserve
        self.ceiling = fd_ceiling(fd_reserve)
        self.on_full = on_full
        self.accepts_per_tick = accepts_per_tick
        self.retry_delay = retry_delay
        self.refused_full = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._serving = False
        self._warned_at: float | None = None

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    def start(self) -> None:
        self._serving = True
        for sock in self.sockets:
            self.loop.add_reader(sock.fileno(), self._ready, sock)

    def close(self) -> None:
        """Stop accepting and close the listening sockets (connections already made stay)."""
        self._serving = False
        for sock in self.sockets:
            if sock.fileno() >= 0:
                self.loop.remove_reader(sock.fileno())
                sock.close()
        for task in list(self._tasks):
            task.cancel()

    def _ready(self, sock: socket.socket) -> None:
        self.ceiling = fd_ceiling(self.fd_reserve)  # the limit may be changed while running (prlimit)
        for _ in range(self.accepts_per_tick):
            try:
                conn, _address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                name = errno.errorcode[exc.errno]
                log.error("accept() failed (%s): not accepting for %g s", name, self.retry_delay)
                self.loop.remove_reader(sock.fileno())
                self.loop.call_later(self.retry_delay, self._resume, sock)
                return
            if self.ceiling is not None and conn.fileno() >= self.ceiling:
                self._refuse_full(conn)
                continue
            conn.setblocking(False)
            task = self.loop.create_task(self._connect(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _resume(self, sock: socket.socket) -> None:
        if self._serving and sock.fileno() >= 0:
            self.loop.add_reader(sock.fileno(), self._ready, sock)

    def _refuse_full(self, conn: socket.socket) -> None:
        """Close at once with a reset: the client learns now, not after a timeout."""
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        conn.close()
        self.refused_full += 1
        now = self.loop.time()
        if self._warned_at is None or now - self._warned_at >= WARN_INTERVAL:
            self._warned_at = now  # the count of every refusal is on on_full's side (metrics)
            log.warning(
                "refusing new connections: this process holds %d file descriptors of its %d "
                "(RLIMIT_NOFILE); run more processes or raise the limit",
                self.ceiling,
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            )
        if self.on_full is not None:
            try:
                self.on_full()
            except Exception:
                log.exception("reporting a refused connection failed")

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.protocol_factory, sock=conn)
        except OSError:  # the peer left before the transport was made
            conn.close()
        except asyncio.CancelledError:  # the listener closes during the handshake
            conn.close()
            raise
