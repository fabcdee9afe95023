"""The asyncio adapter that runs a :class:`protocol.Link` over a ``websockets`` connection.

Shared by the broker, the agent and the operator client: it only moves bytes between the socket
and the sans-I/O core, arms the core's timer, and turns ``Closing`` into a WebSocket close.
"""

from .runner import LinkRunner

__all__ = ["LinkRunner"]
