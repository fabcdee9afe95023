"""Handshake slots: at most ``limit`` TLS handshakes of one process under way at once; the rest wait
their turn, in arrival order, without any TLS work done for them yet.

Why. When a broker process dies, its agents reconnect to the others all at once (a reconnect storm:
docs/PERFORMANCE.md, "Handshake slots"). asyncio starts every handshake as its ClientHello arrives,
and the event loop then advances thousands of them in turn: each needs ~1 ms of CPU, so all of them
finish together, late, after the clients' own timeout (15 s for the agent), and every one of them is
wasted work; the clients retry after their backoff and the same happens again. With slots the
handshakes in progress finish in milliseconds, one batch after another, at the CPU's full rate.

Rules (each a named parameter of :class:`wire.server.WireServer`, documented there):

- A connection asks for a slot only once its first bytes (the ClientHello) have arrived: a client
  that connects and says nothing holds no slot (``open_timeout`` cuts it, as before).
- A slot is given back when the handshake ends (done, failed, or the connection gone), and at the
  latest after ``slot_timeout``: the TLS handshake timeout of a connection holding a slot, so a peer
  that stalls in the middle of its handshake cannot keep a slot for long.
- A waiting connection is not read (its first bytes are kept). One that waited ``max_wait`` is
  closed without TLS work when its turn comes (its client has given up or will, and retries after its
  backoff); when ``max_waiting`` connections already wait, a new one is closed at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_MAX_HANDSHAKES = 256
"""TLS handshakes under way at once per process. Enough to keep a core busy when clients are far
away (a handshake needs ~1 ms of CPU and two round trips: 256 in flight cover 130 ms round trips),
few enough that each finishes in a fraction of a second under load."""

DEFAULT_MAX_WAIT = 10.0
"""Seconds a connection may wait for a slot; less than the agent's 15 s connect timeout, so a
handshake started late still has time to finish before the client gives up."""

DEFAULT_SLOT_TIMEOUT = 10.0
"""Seconds a connection may hold a slot (its TLS handshake timeout)."""

DEFAULT_MAX_WAITING = 8192
"""Connections waiting for a slot at once; one more is closed at once (it retries after backoff)."""


@dataclass(slots=True)
class SlotStats:
    """Counters for operations (``/metrics``) and tests."""

    started: int = 0
    """Handshakes given a slot (at once or after waiting)."""
    waited: int = 0
    """Connections that had to wait for a slot."""
    expired: int = 0
    """Connections closed after waiting ``max_wait`` (no TLS work done)."""
    overflowed: int = 0
    """Connections closed at once because ``max_waiting`` already waited."""
    longest_wait: float = 0.0
    """The longest wait of a connection that got a slot, in seconds."""
    peak: int = 0
    """The most handshakes under way at once."""


@dataclass(slots=True)
class _Waiting:
    since: float
    start: Callable[[], None]
    """Start the handshake (the slot is taken)."""
    drop: Callable[[], None]
    """Close the connection without TLS work."""
    alive: Callable[[], bool]
    """False once the client left while waiting."""


@dataclass(slots=True)
class HandshakeSlots:
    """The slots of one listener. ``limit=None``: no limit (every handshake starts at once)."""

    limit: int | None = DEFAULT_MAX_HANDSHAKES
    max_wait: float = DEFAULT_MAX_WAIT
    slot_timeout: float = DEFAULT_SLOT_TIMEOUT
    max_waiting: int = DEFAULT_MAX_WAITING
    clock: Callable[[], float] = field(default=lambda: asyncio.get_running_loop().time())
    in_progress: int = 0
    stats: SlotStats = field(default_factory=SlotStats)
    _queue: deque[_Waiting] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError("max_handshakes must be at least 1")
        if self.max_wait <= 0 or self.slot_timeout <= 0 or self.max_waiting < 0:
            raise ValueError("handshake slot timeouts must be positive")

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def request(self, start: Callable[[], None], drop: Callable[[], None], alive: Callable[[], bool]) -> bool:
        """Start at once when a slot is free (True), else queue (False; ``start`` or ``drop`` runs
        later) or, when the queue is full, ``drop`` at once (False)."""
        if self.limit is None or self.in_progress < self.limit:
            self._take()
            start()
            return True
        if len(self._queue) >= self.max_waiting:
            self.stats.overflowed += 1
            drop()
            return False
        self.stats.waited += 1
        self._queue.append(_Waiting(self.clock(), start, drop, alive))
        return False

    def release(self) -> None:
        """A handshake ended: its slot goes to the first waiting connection still worth a handshake."""
        self.in_progress = max(0, self.in_progress - 1)
        now = self.clock()
        while self._queue and (self.limit is None or self.in_progress < self.limit):
            waiting = self._queue.popleft()
            if not waiting.alive():
                continue
            waited = now - waiting.since
            if waited > self.max_wait:
                self.stats.expired += 1
                waiting.drop()
                continue
            self._take()
            self.stats.longest_wait = max(self.stats.longest_wait, waited)
            # Not started here: a handshake that fails at once would release (and start the next)
            # from inside this loop, one stack frame per waiting connection.
            asyncio.get_running_loop().call_soon(waiting.start)

    def _take(self) -> None:
        self.in_progress += 1
        self.stats.started += 1
        self.stats.peak = max(self.stats.peak, self.in_progress)
