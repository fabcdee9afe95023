"""The broker's two kinds of live connection as the rest of it sees them (split from
:mod:`broker.server`): :class:`SenderPeer`, a connection as the session manager sees it, and
:class:`AgentConnection`, what the broker keeps per idle agent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protocol import encode
from protocol.messages import Message
from wire import LinkPump

from .core import AgentPeer
from .relay import ScreenPush, Sender

__all__ = ["AgentConnection", "SenderPeer"]


class SenderPeer:
    """A connection as the session manager sees it: typed messages in, queued frames out."""

    __slots__ = ("counted", "sender")

    def __init__(self, sender: Sender, *, counted: Callable[[int], None] | None = None) -> None:
        self.sender = sender
        self.counted = counted
        """Told the size of every message sent (an agent's: ``broker_relay_bytes{to_agent}``)."""

    def send(self, message: Message) -> None:
        frame = encode(message).decode("utf-8")
        if self.counted is not None:
            self.counted(len(frame))
        self.sender.send_control(frame)

    def send_screen(self, frame: bytes, *, keyframe: bool) -> ScreenPush:
        return self.sender.send_screen(frame, keyframe=keyframe)


@dataclass(slots=True, eq=False)
class AgentConnection:
    """One live agent link: what the broker keeps per idle agent, so kept small (DESIGN §7)."""

    serial: str
    contract_id: str
    peer: str
    pump: LinkPump
    session_peer: AgentPeer
    machine_name: str = ""
    display: bool = False
    streaming: bool = False
