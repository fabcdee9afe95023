"""An operator connection to the broker's ``/operator`` path.

Requests carry an ``id`` and resolve the matching answer (or raise :class:`HelpdeskError` with
the broker's stable code); pushed messages (queue changes, session state, chat, inventory,
monitor layouts) go to :attr:`HelpdeskClient.events`, binary screen updates to
:attr:`HelpdeskClient.screen`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect

from protocol import BinaryReceived, Event, Link, Opened, Received
from protocol.codec import encode_raw
from protocol.messages import (
    AuditEntries,
    AuditQuery,
    AuditVerified,
    AuditVerify,
    Auth,
    ChangePassword,
    Chat,
    Claim,
    Claimed,
    Credentials,
    Error,
    InputEvent,
    Invitation,
    Invite,
    Login,
    LoginOk,
    Logout,
    Message,
    Ok,
    Queue,
    QueueList,
    RestartRequest,
    RevealCredentials,
    ScopeRequest,
    ScreenRefresh,
    SessionEnd,
    SessionList,
    Sessions,
    SessionState,
    Transfer,
    Watch,
)
from wire import LinkRunner
from wire.tasks import stop_task

SOFTWARE = "isp-remote-support-helpdesk/0.1"
M = TypeVar("M", bound=Message)


class HelpdeskError(Exception):
    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after


def ssl_context(*, ca_pem: bytes | None = None, cafile: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_pem is not None:
        ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
    elif cafile is not None:
        ctx.load_verify_locations(cafile=str(cafile))
    else:
        ctx.load_default_certs()
    return ctx


class HelpdeskClient:
    def __init__(
        self,
        broker_url: str,
        *,
        ca_pem: bytes | None = None,
        cafile: Path | None = None,
        max_screen_queue: int = 256,
        request_timeout: float = 30.0,
    ) -> None:
        self.url = broker_url.rstrip("/") + "/operator"
        self._ssl = ssl_context(ca_pem=ca_pem, cafile=cafile)
        self.request_timeout = request_timeout
        self.events: asyncio.Queue[Message] = asyncio.Queue()
        self.screen: asyncio.Queue[bytes] = asyncio.Queue(max_screen_queue)
        self.screen_dropped = 0
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._ws: ClientConnection | None = None
        self._runner: LinkRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._opened: asyncio.Future[None] | None = None
        self._ids = 0
        self.login_info: LoginOk | None = None

    async def __aenter__(self) -> HelpdeskClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        self._ws = await connect(
            self.url, ssl=self._ssl, ping_interval=None, compression=None, open_timeout=15, max_size=16 << 20
        )
        link = Link(is_client=True, role="operator", now=time.time(), software=SOFTWARE)
        self._runner = LinkRunner(self._ws, link)
        self._opened = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._runner.run(self._on_event))
        async with asyncio.timeout(self.request_timeout):
            await asyncio.shield(self._opened)

    async def close(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.close(1000, "bye")
        await stop_task(self._task, grace=5, what="operator connection")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(HelpdeskError("closed", "connection closed"))

    @property
    def closed(self) -> bool:
        return self._task is None or self._task.done()

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, Opened):
            if self._opened is not None and not self._opened.done():
                self._opened.set_result(None)
        elif isinstance(event, BinaryReceived):
            try:
                self.screen.put_nowait(event.data)
            except asyncio.QueueFull:
                self.screen_dropped += 1
        elif isinstance(event, Received):
            message = event.message
            request_id = getattr(message, "id", None)
            future = self._pending.pop(request_id, None) if request_id else None
            if future is not None and not future.done():
                future.set_result(message)
            else:
                await self.events.put(message)

    def _next_id(self) -> str:
        self._ids += 1
        return f"h{self._ids}"

    async def _request(self, message: Message, expect: type[M]) -> M:
        assert self._runner is not None, "not connected"
        request_id = getattr(message, "id", None)
        assert isinstance(request_id, str), "requests carry an id"
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self._runner.send(message)
        async with asyncio.timeout(self.request_timeout):
            answer = await future
        if isinstance(answer, Error):
            raise HelpdeskError(answer.code, answer.message, answer.retry_after)
        if not isinstance(answer, expect):
            raise HelpdeskError(
                "unexpected_message", f"expected {expect.__name__}, got {type(answer).__name__}"
            )
        return answer

    async def send(self, message: Message) -> None:
        assert self._runner is not None, "not connected"
        await self._runner.send(message)

    async def send_unchecked(self, fields: Mapping[str, Any]) -> None:
        """Send a plain dict as one text frame, unchecked: for tests and conformance probes that
        play a client that does not check (a message object can only be valid, docs/protocol.md)."""
        assert self._runner is not None, "not connected"
        await self._runner.flush()
        await self._runner.ws.send(encode_raw(fields).decode("utf-8"))

    async def next_event(self, *types: type[Message], timeout: float = 30.0) -> Message:
        """The next pushed message of one of ``types`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {', '.join(t.__name__ for t in types)} within {timeout} s")
            async with asyncio.timeout(remaining):
                message = await self.events.get()
            if not types or isinstance(message, types):
                return message

    async def wait_state(self, session_id: str, predicate: Any, *, timeout: float = 30.0) -> SessionState:
        """Wait for a ``session_state`` of this session for which ``predicate(state)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            state = await self.next_event(SessionState, timeout=max(0.01, deadline - time.monotonic()))
            assert isinstance(state, SessionState)
            if state.session_id == session_id and predicate(state):
                return state

    # -- requests ---------------------------------------------------------------------------------

    async def login(self, name: str, password: str, totp: str) -> LoginOk:
        self.login_info = await self._request(
            Login(id=self._next_id(), name=name, password=password, totp=totp), LoginOk
        )
        return self.login_info

    async def auth(self, token: str) -> LoginOk:
        self.login_info = await self._request(Auth(id=self._next_id(), token=token), LoginOk)
        return self.login_info

    async def change_password(self, old: str, new: str) -> None:
        await self._request(ChangePassword(id=self._next_id(), old_password=old, new_password=new), Ok)

    async def logout(self) -> None:
        await self._request(Logout(id=self._next_id()), Ok)

    async def queue(self) -> Queue:
        return await self._request(QueueList(id=self._next_id()), Queue)

    async def claim(
        self,
        *,
        code: str | None = None,
        session_id: str | None = None,
        scopes: Iterable[str] = ("screen:view",),
    ) -> Claimed:
        return await self._request(
            Claim(id=self._next_id(), code=code, session_id=session_id, scopes=tuple(scopes)), Claimed
        )

    async def watch(self, session_id: str) -> None:
        """Attach as a viewer; the session's state arrives as an event."""
        assert self._runner is not None
        await self._runner.send(Watch(id=self._next_id(), session_id=session_id))

    async def request_scopes(self, session_id: str, scopes: Iterable[str]) -> None:
        await self.send(ScopeRequest(id=self._next_id(), session_id=session_id, scopes=tuple(scopes)))

    async def send_input(self, session_id: str, kind: str, **fields: Any) -> None:
        self._ids += 1
        await self.send(InputEvent(session_id=session_id, seq=self._ids, kind=kind, **fields))  # type: ignore[arg-type]

    async def refresh(self, session_id: str, monitor: int | None = None) -> None:
        await self.send(ScreenRefresh(session_id=session_id, monitor=monitor))

    async def restart(self, session_id: str) -> None:
        """Ask the subscriber's PC to restart (needs ``system:restart`` granted; issue 16)."""
        await self.send(RestartRequest(id=self._next_id(), session_id=session_id))

    async def chat(self, session_id: str, text: str) -> None:
        await self.send(Chat(session_id=session_id, text=text))

    async def end(self, session_id: str, reason: str = "") -> None:
        await self.send(SessionEnd(id=self._next_id(), session_id=session_id, reason=reason))

    async def invite(self, session_id: str, colleague: str) -> Invitation:
        """Ask the subscriber to let colleague ``colleague`` watch (read-only); returns the
        ``asked`` invitation; the answer comes later as an ``invitation`` event."""
        return await self._request(
            Invite(id=self._next_id(), session_id=session_id, colleague=colleague), Invitation
        )

    async def transfer(self, session_id: str, colleague: str) -> Invitation:
        """Ask the subscriber to let colleague ``colleague`` take the session over."""
        return await self._request(
            Transfer(id=self._next_id(), session_id=session_id, colleague=colleague), Invitation
        )

    async def reveal_credentials(self, session_id: str) -> Credentials:
        """The router login the subscriber typed in (別紙5 (11)); the broker audits every call."""
        return await self._request(RevealCredentials(id=self._next_id(), session_id=session_id), Credentials)

    async def sessions(self) -> Sessions:
        return await self._request(SessionList(id=self._next_id()), Sessions)

    async def audit(self, *, limit: int = 100, subject: str | None = None) -> AuditEntries:
        return await self._request(AuditQuery(id=self._next_id(), limit=limit, subject=subject), AuditEntries)

    async def audit_verify(self) -> AuditVerified:
        return await self._request(AuditVerify(id=self._next_id()), AuditVerified)
