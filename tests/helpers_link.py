"""Two :class:`protocol.Link` cores joined in memory, with a fake clock (h11's ``ConnectionPair``).

No sockets, no event loop, no sleeping: frames queued by one side are fed to the other by
:meth:`LinkPair.pump`, and time moves only when a test calls :meth:`LinkPair.advance`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.limits import DEFAULT_LIMITS, SUPPORTED_VERSIONS, Limits
from protocol.link import Event, Link, LinkState
from protocol.messages import Role

START = 1_700_000_000.0
"""A plausible epoch time, so ``ping.time`` passes the wire's ``Time`` range check."""


@dataclass(slots=True)
class FakeClock:
    now: float = START

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass(slots=True)
class LinkPair:
    """A client link and a server link talking to each other.

    ``client_events`` / ``server_events`` accumulate everything each side reported, in order;
    ``client_frames`` / ``server_frames`` record every frame each side sent (for assertions on the
    wire bytes).
    """

    client: Link
    server: Link
    clock: FakeClock
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)
    client_frames: list[bytes] = field(default_factory=list)
    server_frames: list[bytes] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        *,
        client_versions: tuple[int, ...] = SUPPORTED_VERSIONS,
        server_versions: tuple[int, ...] = SUPPORTED_VERSIONS,
        client_role: Role = "agent",
        server_role: Role = "broker",
        expect_role: Role | None = None,
        limits: Limits = DEFAULT_LIMITS,
        client_limits: Limits | None = None,
        server_limits: Limits | None = None,
        start: float = START,
    ) -> LinkPair:
        clock = FakeClock(start)
        client = Link(
            is_client=True,
            role=client_role,
            now=clock.now,
            software="test-agent/1",
            limits=client_limits or limits,
            versions=client_versions,
        )
        server = Link(
            is_client=False,
            role=server_role,
            now=clock.now,
            expect_role=expect_role,
            software="test-broker/1",
            limits=server_limits or limits,
            versions=server_versions,
        )
        return cls(client=client, server=server, clock=clock)

    def pump(self) -> tuple[list[Event], list[Event]]:
        """Deliver queued frames both ways until neither side has anything to send.

        Returns the events produced by this call: ``(client_events, server_events)``.
        """
        new_client: list[Event] = []
        new_server: list[Event] = []
        while True:
            to_server = self.client.data_to_send()
            to_client = self.server.data_to_send()
            if not to_server and not to_client:
                return new_client, new_server
            for frame in to_server:
                self.client_frames.append(frame)
                events = self.server.receive(frame, self.clock.now)
                new_server += events
                self.server_events += events
            for frame in to_client:
                self.server_frames.append(frame)
                events = self.client.receive(frame, self.clock.now)
                new_client += events
                self.client_events += events

    def open(self) -> None:
        """Run the hello exchange; the test fails if it does not open both sides."""
        self.pump()
        assert self.client.state is LinkState.OPEN, self.client_events
        assert self.server.state is LinkState.OPEN, self.server_events

    def advance(self, seconds: float) -> tuple[list[Event], list[Event]]:
        """Move the clock and fire each side's timer if it is due (as the adapter's ``call_at``)."""
        now = self.clock.advance(seconds)
        client_events: list[Event] = []
        server_events: list[Event] = []
        client_timer = self.client.next_timer()
        if client_timer is not None and client_timer <= now:
            client_events = self.client.handle_timer(now)
        server_timer = self.server.next_timer()
        if server_timer is not None and server_timer <= now:
            server_events = self.server.handle_timer(now)
        self.client_events += client_events
        self.server_events += server_events
        return client_events, server_events
