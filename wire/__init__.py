"""The asyncio adapters that run a :class:`protocol.Link` over a WebSocket.

Shared by the broker, the agent and the operator client: they only move bytes between the socket
and the sans-I/O core, arm the core's timer, and turn ``Closing`` into a WebSocket close.
:class:`LinkRunner` is a coroutine over any connection with ``recv``/``send``/``close`` (websockets'
client connections, :class:`AsyncConnection`); the broker's agent and operator links use
:class:`LinkPump` on the lean :class:`WireServer`, with no task per connection.
"""

from .pump import LinkPump
from .runner import LinkRunner
from .server import WireConnection, WireServer
from .stream import AsyncConnection

__all__ = ["AsyncConnection", "LinkPump", "LinkRunner", "WireConnection", "WireServer"]
