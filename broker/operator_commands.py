"""An operator's link: login, password change and every other command, in order (split from
:mod:`broker.server`, which mixes :class:`OperatorCommands` into its ``Broker``).

Operator links are driven from callbacks as agent links are, so input reaches the agent in the
same event-loop turn; a login, token auth or password change (awaited: the database, argon2id in a
worker thread) holds that operator's later messages, in order, until it is done
(:mod:`broker.ordered`). After that, the per-message identity check reads no database
(:meth:`broker.operators.OperatorAccounts.authenticate`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from protocol import CLOSE_POLICY, Event, Received
from protocol.errors import ErrorCode
from protocol.messages import Auth, ChangePassword, Error, Login, LoginOk, Logout, Message, Ok
from wire import LinkPump, WireConnection

from .core import OperatorPeer
from .errors import BrokerError, RefusedError
from .operator_links import OperatorLinks
from .operators import OperatorAccounts
from .ordered import BacklogFull, OrderedDispatch
from .peers import SenderPeer
from .relay import Sender
from .session_host import SessionHost

if TYPE_CHECKING:
    from .cluster_host import SharedAddressLimit

__all__ = ["OperatorCommands"]


class OperatorCommands:
    """The operator side of :class:`broker.server.Broker` (which sets these attributes)."""

    clock: Callable[[], float]
    sessions: SessionHost
    accounts: OperatorAccounts
    operator_links: OperatorLinks
    _login_attempts: SharedAddressLimit

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
        raise NotImplementedError

    def _operator(self, ws: WireConnection) -> LinkPump:
        """An operator link, driven from callbacks like an agent's: input reaches the agent in the
        same event-loop turn; logins and password changes wait for argon2 in a thread, in order."""
        sender = Sender(ws)
        op = OperatorPeer(peer=SenderPeer(sender), address=ws.peer)

        def crashed() -> None:
            pump.close(1011, ErrorCode.INTERNAL.value)

        dispatch: OrderedDispatch[Message] = OrderedDispatch(
            lambda message: self._operator_command(op, message),
            lambda message: self._operator_slow(op, message, ws),
            lambda message: isinstance(message, Login | Auth | ChangePassword),
            on_crash=crashed,
        )

        def on_event(event: Event) -> None:
            if isinstance(event, Received):
                try:
                    dispatch.push(event.message)
                except BacklogFull:
                    self.sessions.relayed.metrics.count_refusal(ErrorCode.RATE_LIMITED)
                    pump.send(Error(code=ErrorCode.RATE_LIMITED.value, message="too many messages at once"))
                    pump.close(CLOSE_POLICY, ErrorCode.RATE_LIMITED.value)

        def on_lost() -> None:
            dispatch.close()
            sender.close()
            self.operator_links.unregister(op)
            self.sessions.operator_detached(op)

        pump = self._pump(ws, "operator", sender, on_event, on_lost, binary=False)
        self.operator_links.register(op, pump)
        return pump

    def _operator_refused(
        self, op: OperatorPeer, request_id: str | None, exc: BrokerError, now: float
    ) -> None:
        self.sessions.relayed.metrics.count_refusal(exc.code)
        op.peer.send(
            Error(id=request_id, code=exc.code.value, message=exc.message, retry_after=exc.retry_after)
        )
        if exc.code is ErrorCode.AUTH_REQUIRED and op.name is not None:
            self.sessions.operator_detached(op)
            op.name = op.token = None

    def _operator_authenticated(self, op: OperatorPeer, now: float) -> str:
        """The operator's name, after checking the login still holds (expired, or logged out elsewhere)."""
        if op.name is None or op.token is None:
            raise RefusedError("log in first", code=ErrorCode.AUTH_REQUIRED)
        self.accounts.authenticate(op.token, now=now)
        return op.name

    def _operator_command(self, op: OperatorPeer, message: Message) -> None:
        """Everything but login and password change: handled at once, in the callback."""
        now = self.clock()
        try:
            self._operator_authenticated(op, now)
            if isinstance(message, Logout):
                assert op.token is not None
                self.accounts.logout(op.token, now=now)
                op.peer.send(Ok(id=message.id))
                # Every other connection with this token stops now, not at its next message.
                self.operator_links.end_token(op.token, now, reason="logged out", keep=op)
                self.sessions.operator_detached(op)
                op.name = op.token = None
            elif op.must_change_password:
                raise RefusedError("change the initial password first", code=ErrorCode.NOT_ALLOWED)
            else:
                self.sessions.operator_message(op, message)
        except BrokerError as exc:
            self._operator_refused(op, getattr(message, "id", None), exc, now)

    async def _operator_slow(self, op: OperatorPeer, message: Message, ws: WireConnection) -> None:
        """Login, token auth and password change (argon2id in a worker thread)."""
        now = self.clock()
        try:
            if isinstance(message, Login | Auth):
                await self._operator_login(op, message, now)
                ws.authenticated()  # logged in: no longer counted against its address
            elif isinstance(message, ChangePassword):
                name = self._operator_authenticated(op, now)
                await self.accounts.change_password(name, message.old_password, message.new_password, now=now)
                op.must_change_password = False
                op.peer.send(Ok(id=message.id))
                op.peer.send(self.sessions.queue())
        except BrokerError as exc:
            self._operator_refused(op, getattr(message, "id", None), exc, now)

    async def _operator_login(self, op: OperatorPeer, message: Login | Auth, now: float) -> None:
        if isinstance(message, Login):
            if (retry := await self._login_attempts.hit(op.address, now)) is not None:
                raise RefusedError(
                    "too many login attempts from this address",
                    code=ErrorCode.RATE_LIMITED,
                    retry_after=retry,
                )
            # argon2id is deliberately slow (tens of ms): OperatorAccounts verifies in a worker
            # thread, so logins, good or hostile, never stall the relay of everyone else.
            result = await self.accounts.login(
                message.name, message.password, message.totp, now=now, peer=op.address
            )
            token, expires_at, must_change = result.token, result.expires_at, result.password_change_required
            name, display_name, role = result.name, result.display_name, result.role
        else:
            identity = await self.accounts.admit(message.token, now=now)  # one SELECT per link
            token, expires_at, must_change = (
                message.token,
                identity.expires_at,
                identity.password_change_required,
            )
            name, display_name, role = identity.name, identity.display_name, identity.role
        op.name, op.display_name, op.role, op.token = name, display_name, role, token
        op.expires_at = expires_at
        op.must_change_password = must_change
        op.peer.send(
            LoginOk(
                id=message.id,
                token=token,
                expires_at=expires_at,
                name=name,
                display_name=display_name,
                role=role,
                password_change_required=must_change,
            )
        )
        self.sessions.operator_attached(op)
        if not must_change:
            op.peer.send(self.sessions.queue())
