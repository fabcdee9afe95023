"""A hostile broker for the agent's consent tests (issue 11): real TLS, real WebSocket, 127.0.0.1.

It serves ``/agent`` with the real broker's server certificate and CA (so the real agent,
``python -m agent request-support`` in its own process, connects to it as it would to the real
broker: mutual TLS, ``hello``), speaks the real protocol core (:class:`protocol.Link`), and then
sends whatever the test tells it to: forged ``session_state``, ``screen_refresh`` after a
withdrawal, input without a grant, names and chat full of escape sequences. Everything the agent
sends is kept in order (text messages and binary frames in one log), so a test can say "nothing
after this receipt".

It runs in a thread with its own event loop because the tests wait with blocking helpers.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from protocol import BinaryReceived, Link, Received
from protocol.messages import Message
from tests.helpers import event_loop_thread, wait_until
from wire import LinkRunner


@dataclass(frozen=True)
class Entry:
    """One thing the agent sent: a message, or a binary frame (``message`` None, ``size``)."""

    at: float
    message: Message | None
    size: int = 0


class HostileBroker:
    def __init__(self, broker_dir: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(broker_dir / "server.pem", broker_dir / "server-key.pem")
        ctx.load_verify_locations(broker_dir / "ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
        self._ssl = ctx
        self.log: list[Entry] = []
        self._lock = threading.Lock()
        self._runner: LinkRunner | None = None
        self._server: Any = None
        self.port = 0
        self.connections = 0

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}"

    def _run(self, coro: Any, timeout: float = 15.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def start(self) -> HostileBroker:
        async def go() -> None:
            self._server = await serve(self._handler, "127.0.0.1", 0, ssl=self._ssl, compression=None)
            self.port = self._server.sockets[0].getsockname()[1]

        self._run(go())
        return self

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        self._run(stop())

    async def _handler(self, ws: ServerConnection) -> None:
        link = Link(is_client=False, role="broker", now=time.time(), expect_role="agent")
        runner = LinkRunner(ws, link)
        self._runner = runner
        self.connections += 1

        async def on_event(event: Any) -> None:
            now = time.monotonic()
            with self._lock:
                if isinstance(event, Received):
                    self.log.append(Entry(now, event.message))
                elif isinstance(event, BinaryReceived):
                    self.log.append(Entry(now, None, len(event.data)))

        await runner.run(on_event)

    # -- for the test ------------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        async def go() -> None:
            assert self._runner is not None, "the agent is not connected"
            await self._runner.send(message)

        self._run(go())

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self.log)

    def messages(self, kind: type[Message]) -> list[Message]:
        return [e.message for e in self.entries() if isinstance(e.message, kind)]

    def wait_for(self, kind: type[Message], *, count: int = 1, timeout: float = 30.0) -> Message:
        found = wait_until(
            lambda: len(self.messages(kind)) >= count and self.messages(kind),
            timeout=timeout,
            what=f"{count} {kind.__name__} from the agent",
        )
        return found[count - 1]  # type: ignore[no-any-return]

    def index_of(self, predicate: Callable[[Entry], bool]) -> int:
        return next(i for i, e in enumerate(self.entries()) if predicate(e))

    def binary_count(self) -> int:
        return sum(1 for e in self.entries() if e.message is None)


@contextmanager
def hostile_broker(broker_dir: Path) -> Iterator[HostileBroker]:
    with event_loop_thread() as loop:
        hostile = HostileBroker(broker_dir, loop).start()
        try:
            yield hostile
        finally:
            hostile.close()


def point_agent_at(agent_dir: Path, url: str) -> None:
    """Make the enrolled agent connect to ``url`` (its stored broker address, nothing else)."""
    path = agent_dir / "agent.json"
    state = json.loads(path.read_text("utf-8"))
    state["broker_url"] = url
    path.write_text(json.dumps(state, indent=2), "utf-8")
