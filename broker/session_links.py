"""Sessions across processes: an operator on process A, the agent on process B (docs/cluster.md §6).

The node-to-node link (:mod:`broker.cluster.link`, mutual TLS with the cluster's own CA) carries an
operator's session messages from A to B and B's answers and screen frames back. **B owns the
session**: its core checks consent and the scope of every input event and writes the audit, as for
an operator of its own; A only authenticated the operator and forwards.

- A → B: ``TEXT`` frames whose payload is an :class:`Envelope`: A's key for that operator
  connection, the authenticated name, display name, role and address, and the protocol message.
  ``END`` (payload: the key) when that operator connection is gone.
- B → A: ``TEXT`` frames ``<key>\\n<protocol message>`` and ``SCREEN`` frames ``<key>\\n<update>``
  ("latest wins": a screen frame is dropped while the link's send buffer is full, and B's core asks
  the agent for a keyframe, as for a slow viewer of its own).
- A → B: ``KEYFRAME`` frames (payload: the key) when one of A's viewers fell behind on A (its own
  queue dropped B's frames): B's core asks the agent for a keyframe as for a slow viewer of its own,
  at most once per session per ``keyframe_interval`` (later requests are coalesced into one).

:class:`SessionLinks` is both sides; the host (:mod:`broker.session_host`) calls :meth:`forward`,
:meth:`detached`, and the cluster node's link listener calls :meth:`on_listener_frame`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from protocol import decode, encode
from protocol.messages import Claim, Message, SessionState, Watch
from protocol.screen import FLAG_KEYFRAME, peek_header

from .cluster.link import Frame, FrameKind, Link, LinkError, NodeCredentials, dial
from .core import FrameDelivered, OperatorPeer
from .relay import ScreenPush

if TYPE_CHECKING:
    from .session_host import SessionHost

log = logging.getLogger("broker.cluster")

__all__ = ["Envelope", "RemoteOperator", "SessionLinks"]


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One operator message forwarded from the operator's process to the agent's."""

    key: str
    name: str
    display_name: str
    role: str
    address: str
    message: bytes
    """The protocol message as the operator sent it (JSON, decoded and checked again by B)."""


_ENVELOPE = msgspec.msgpack.Decoder(Envelope)
ADDRESS_WAIT = 12.0
"""Seconds a forward waits for the holder's link address: its heartbeat comes every 5 s
(``broker.cluster.nodes``); a process that started after the holder has not heard one yet."""
ADDRESS_WAIT_STEPS = 60
_MAX_KEY = 32
KEYFRAME_INTERVAL = 0.5
"""Seconds between two keyframe requests a peer's ``KEYFRAME`` frames may cause for one session
(later ones wait and are coalesced into one): no peer makes the agent send keyframes in a loop."""


class RemoteOperator:
    """B's handle of an operator connection on A (the ``peer`` of an :class:`OperatorPeer`)."""

    def __init__(self, link: Link, key: str, session_id: str) -> None:
        self.link = link
        self.key = key.encode("ascii")
        self.session_id = session_id
        """The session of the last message forwarded: frames carry it (A routes by ``key``)."""
        self.needs_keyframe = False
        """A screen frame was dropped: updates until the next keyframe would paint on a picture
        the operator never got (as :class:`~broker.relay.OutboundQueue` does for a local viewer)."""

    def send(self, message: Message) -> None:
        try:
            self.link.send_text(self.session_id, self.key + b"\n" + encode(message))
        except LinkError as exc:
            log.info("cluster link: message to an operator on %s lost: %s", self.link.peer, exc.message)

    def send_screen(self, frame: bytes, *, keyframe: bool) -> ScreenPush:
        if self.needs_keyframe and not keyframe:
            return ScreenPush.DROPPED
        try:
            sent = self.link.send_screen(self.session_id, self.key + b"\n" + frame)
        except LinkError:
            return ScreenPush.DROPPED
        self.needs_keyframe = not sent
        return ScreenPush.QUEUED if sent else ScreenPush.BEHIND


class SessionLinks:
    """Forwarding of operator session traffic between processes (see the module docstring)."""

    def __init__(
        self,
        host: SessionHost,
        *,
        credentials: NodeCredentials,
        address: Callable[[str], str | None],
        keyframe_interval: float = KEYFRAME_INTERVAL,
    ) -> None:
        self.host = host
        self.keyframe_interval = keyframe_interval
        self.credentials = credentials
        self.address = address
        """A node's link address (``ip:port``) from its heartbeat (``ClusterNode.address``)."""
        self.remote: dict[str, str] = {}
        """Session id → the process holding its agent (from the code rows and the queue)."""
        # A side
        self._links: dict[str, Link] = {}
        self._dialing: dict[str, asyncio.Future[Link]] = {}
        self._keys: dict[OperatorPeer, str] = {}
        self._operators: dict[str, OperatorPeer] = {}
        self._used: dict[OperatorPeer, set[str]] = {}
        self._stale: set[str] = set()
        """Sessions whose holder's link was lost: re-linked at their next holder's signal."""
        self._watching: dict[str, set[OperatorPeer]] = {}
        """Session id → our operators who claimed or watch it (re-linked when it moves)."""
        self._count = 0
        # B side
        self._remote_ops: dict[tuple[Link, str], OperatorPeer] = {}
        self._watched: set[Link] = set()
        self._keyframe_at: dict[str, float] = {}
        self._keyframe_later: dict[str, asyncio.TimerHandle] = {}
        self.keyframe_requests = {"asked": 0, "coalesced": 0, "ignored": 0}
        """``KEYFRAME`` frames received: fed to the core, folded into a pending one, or ignored."""

    # -- A: the operator's process ----------------------------------------------------------------

    def holder(self, session_id: str | None) -> str | None:
        """The other process that holds this session, if it is not ours."""
        if session_id is None or session_id in self.host.core.sessions:
            return None
        node = self.remote.get(session_id)
        return node if node is not None and node != self.host.node else None

    async def forward(self, op: OperatorPeer, node: str, session_id: str, message: Message) -> None:
        """Send one operator message to ``node`` (in the operator's order: the host awaits this)."""
        key = self._keys.get(op)
        if key is None:
            self._count += 1
            key = self._keys[op] = f"o{self._count}"
            self._operators[key] = op
        envelope = Envelope(
            key=key,
            name=op.name or "",
            display_name=op.display_name,
            role=op.role,
            address=op.address,
            message=encode(message),
        )
        try:
            link = await self._link(node)
            link.send_text(session_id, msgspec.msgpack.encode(envelope))
        except LinkError as exc:
            log.warning("cluster link to %s: %s", node, exc.message)
            self.host.relayed.metrics.count_refusal("not_found")
            from protocol.errors import ErrorCode
            from protocol.messages import Error

            op.peer.send(
                Error(
                    id=getattr(message, "id", None),
                    code=ErrorCode.NOT_FOUND.value,
                    message="the subscriber's PC is not reachable right now",
                )
            )
            return
        self._used.setdefault(op, set()).add(node)
        if isinstance(message, Claim | Watch):
            self._watching.setdefault(session_id, set()).add(op)

    def waiting(self, holders: dict[str, str]) -> None:
        """The waiting requests of other processes (the queue, read from the database): their holders
        are known from now on; those no longer waiting and watched by nobody here are forgotten (the
        map stays as large as the queue plus our operators' sessions)."""
        for session_id in [s for s in self.remote if s not in holders and s not in self._watching]:
            del self.remote[session_id]
            self._stale.discard(session_id)
        self.remote.update(holders)

    def moved(self, session_id: str, node: str) -> None:
        """``node`` now holds ``session_id`` (it adopted it after its agent reconnected there): our
        operators of that session watch it again, there (over the link) or here (locally)."""
        ops = self._watching.get(session_id)
        if not ops:
            return
        if node == self.host.node:
            if self.remote.pop(session_id, None) is None:
                return
        elif self.remote.get(session_id) == node and session_id not in self._stale:
            return
        else:
            self.remote[session_id] = node
        self._stale.discard(session_id)
        log.info("session %s moved to %s: re-linking %d operator(s)", session_id, node, len(ops))
        for op in list(ops):
            self._count += 1
            self.host.operator_message(op, Watch(id=f"relink{self._count}", session_id=session_id))

    def watched(self, session_id: str) -> bool:
        """Whether operators of this process claimed or watch this session (held elsewhere)."""
        return bool(self._watching.get(session_id))

    def ended(self, state: SessionState) -> None:
        """The session ended without its holder telling us (swept after its process died): our
        operators of it get its last state; nothing is left to re-link."""
        session_id = state.session_id
        self.remote.pop(session_id, None)
        self._stale.discard(session_id)
        for op in sorted(self._watching.pop(session_id, set()), key=lambda o: self._keys.get(o, "")):
            op.peer.send(state)

    def detached(self, op: OperatorPeer) -> None:
        """An operator connection on this process is gone: the holders detach it too."""
        key = self._keys.pop(op, None)
        if key is None:
            return
        self._operators.pop(key, None)
        for watchers in self._watching.values():
            watchers.discard(op)
        for node in self._used.pop(op, set()):
            link = self._links.get(node)
            if link is not None:
                with contextlib.suppress(LinkError):
                    link.send_text("detach", key.encode("ascii") + b"\n")

    async def _link(self, node: str) -> Link:
        link = self._links.get(node)
        if link is not None and link.transport is not None and not link.transport.is_closing():
            return link
        pending = self._dialing.get(node)
        if pending is not None:
            return await asyncio.shield(pending)
        address = self.address(node)
        for _ in range(ADDRESS_WAIT_STEPS):  # a node started before us: its next heartbeat says where
            if address is not None:
                break
            await asyncio.sleep(ADDRESS_WAIT / ADDRESS_WAIT_STEPS)
            address = self.address(node)
        if address is None:
            raise LinkError(f"no address known for {node}")
        host, _, port = address.rpartition(":")
        future: asyncio.Future[Link] = asyncio.get_running_loop().create_future()
        self._dialing[node] = future
        try:
            link = await dial(self.credentials, node, host.strip("[]"), int(port), self._from_holder)
            link.on_lost = lambda lost: self._forget(node, lost)
            self._links[node] = link
            future.set_result(link)
            return link
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._dialing.pop(node, None)

    def _forget(self, node: str, link: Link) -> None:
        if self._links.get(node) is link:
            del self._links[node]
        # The holder's process went away: whoever adopts these sessions next — another process, or
        # the same node id restarted — must get our operators' watch again (see moved()).
        self._stale.update(s for s, holder in self.remote.items() if holder == node)

    def _from_holder(self, link: Link, frame: Frame) -> None:
        """B's answers and screen frames for our operators."""
        key, _, body = frame.payload.partition(b"\n")
        op = self._operators.get(key.decode("ascii", "replace"))
        if op is None:
            return
        if frame.kind is FrameKind.SCREEN:
            try:
                keyframe = bool(peek_header(body).flags & FLAG_KEYFRAME)
            except Exception:
                return
            result = op.peer.send_screen(body, keyframe=keyframe)
            if result is not ScreenPush.QUEUED:
                self.host.relayed.screen(result)  # our operator's own queue (the holder counts its bytes)
            if result is ScreenPush.BEHIND:
                self._behind(link, key, op, frame.session_id)
        elif frame.kind is FrameKind.TEXT:
            try:
                message = decode(body)
            except Exception:
                log.warning("cluster link from %s: a message that does not decode", link.peer)
                return
            if isinstance(message, SessionState) and message.phase == "ended":
                self._watching.pop(message.session_id, None)  # over: nothing to re-link
                self.remote.pop(message.session_id, None)
                self._stale.discard(message.session_id)
            op.peer.send(message)

    def _behind(self, link: Link, key: bytes, op: OperatorPeer, session_id: str) -> None:
        """Our viewer fell behind: its queue dropped what it held and waits for a keyframe. Only the
        holder can ask the agent for one: tell it, for every session of that viewer it holds (one
        queue per connection; a frame names the session of the connection's last message)."""
        node = link.peer
        sessions = {session_id}
        sessions.update(s for s, ops in self._watching.items() if op in ops and self.remote.get(s) == node)
        try:
            for session in sorted(sessions):
                link.send_keyframe_request(session, key)
        except LinkError as exc:
            log.info("cluster link: keyframe request to %s lost: %s", node, exc.message)

    # -- B: the agent's process -------------------------------------------------------------------

    def on_listener_frame(self, link: Link, frame: Frame) -> None:
        """An operator message from another process (its identity authenticated there)."""
        if frame.kind is FrameKind.KEYFRAME:
            self._keyframe_wanted(link, frame)
            return
        if frame.kind is not FrameKind.TEXT:
            return
        if frame.session_id == "detach":
            key = frame.payload.partition(b"\n")[0].decode("ascii", "replace")
            op = self._remote_ops.pop((link, key), None)
            if op is not None:
                self.host.operator_detached(op)
            return
        try:
            envelope = _ENVELOPE.decode(frame.payload)
            message = decode(envelope.message)
        except Exception:
            log.warning("cluster link from %s: a frame that does not decode; closing", link.peer)
            link.close()
            return
        if not envelope.name or len(envelope.key) > _MAX_KEY:
            return
        op = self._remote_ops.get((link, envelope.key))
        if op is None:
            remote = RemoteOperator(link, envelope.key, frame.session_id)
            op = OperatorPeer(
                peer=remote,
                address=f"{envelope.address} via {link.peer}"[:128],
                name=envelope.name,
                display_name=envelope.display_name,
                role=envelope.role,
            )
            self._remote_ops[(link, envelope.key)] = op
            if link not in self._watched:
                self._watched.add(link)
                previous = link.on_lost

                def lost(gone: Link) -> None:
                    self._watched.discard(gone)
                    self._link_lost(gone)
                    if previous is not None:
                        previous(gone)

                link.on_lost = lost
        assert isinstance(op.peer, RemoteOperator)
        op.peer.session_id = frame.session_id
        self.host.operator_message(op, message)

    def _link_lost(self, link: Link) -> None:
        for (owner, key), op in list(self._remote_ops.items()):
            if owner is link:
                del self._remote_ops[(owner, key)]
                self.host.operator_detached(op)

    def _keyframe_wanted(self, link: Link, frame: Frame) -> None:
        """A viewer on the peer's process fell behind (see :meth:`_behind`). Honoured only for a
        session held here that this link's operator connection (the key) watches; then as for a
        slow viewer of ours (``FrameDelivered(behind=True)``: the core asks once until a keyframe
        comes), at most once per ``keyframe_interval`` per session. A request within the interval
        waits for its end, folded with any others into one: a flood costs one timer, not keyframes."""
        key = frame.payload.decode("ascii", "replace") if len(frame.payload) <= _MAX_KEY else ""
        op = self._remote_ops.get((link, key))
        session = self.host.core.sessions.get(frame.session_id)
        if op is None or session is None or op not in session.viewers:
            self.keyframe_requests["ignored"] += 1
            return
        if session.id in self._keyframe_later:
            self.keyframe_requests["coalesced"] += 1
            return
        loop = asyncio.get_running_loop()
        due = self._keyframe_at.get(session.id, float("-inf")) + self.keyframe_interval
        if loop.time() >= due:
            self._ask_keyframe(session.id)
        else:
            self.keyframe_requests["coalesced"] += 1
            self._keyframe_later[session.id] = loop.call_at(due, self._ask_keyframe, session.id)

    def _ask_keyframe(self, session_id: str) -> None:
        self._keyframe_later.pop(session_id, None)
        sessions = self.host.core.sessions
        if session_id not in sessions:
            self._keyframe_at.pop(session_id, None)
            return
        self._keyframe_at[session_id] = asyncio.get_running_loop().time()
        if len(self._keyframe_at) > 2 * len(sessions) + 64:  # ended sessions: forget them
            for gone in [s for s in self._keyframe_at if s not in sessions]:
                del self._keyframe_at[gone]
        self.keyframe_requests["asked"] += 1
        self.host.feed(FrameDelivered(session_id=session_id, delivered_bytes=0, behind=True))
