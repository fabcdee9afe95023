"""Issue 11 items 5, 6, 7 with hostile operator clients: bare WebSockets with JSON written by hand,
against a real broker process and a real agent (``request-support --test-pattern``).

- Read-only means read-only: a supervisor's ``screen_refresh {monitor}`` and ``input`` are refused
  with ``not_allowed``, and the subscriber's shared monitor does not change.
- Every person who sees the screen is known: a supervisor joining is sent to the operator (and
  the agent: a bare agent connection with the real certificate) in ``session_state.viewers``,
  on join and on leave, and audited.
- Logout, lock and disable end every connection of the token or operator within 1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from helpdesk.client import ssl_context
from protocol.limits import SUPPORTED_VERSIONS
from tests.helpers import (
    BrokerProcess,
    OperatorAccount,
    SupportProcess,
    add_operator,
    enrolled_agent,
    start_support,
)
from tests.wire.serving import client_context

pytestmark = pytest.mark.e2e

Item = dict[str, Any] | bytes


class RawOperator:
    """A hostile operator client: no helpdesk library, every message a hand-written JSON object."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.broker = broker
        self.ws: ClientConnection | None = None
        self.received: list[Item] = []
        self.closed_at: float | None = None
        self.close_reason: str | None = None
        self._new = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._ids = 0

    async def __aenter__(self) -> RawOperator:
        self.ws = await connect(
            self.broker.url + "/operator",
            ssl=ssl_context(cafile=self.broker.data_dir / "ca.pem"),
            ping_interval=None,
            compression=None,
            open_timeout=15,
            max_size=16 << 20,
        )
        self._reader = asyncio.create_task(self._read())
        await self.send({"type": "hello", "versions": list(SUPPORTED_VERSIONS), "role": "operator"})
        await self.wait(lambda m: m.get("type") == "hello")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.ws is not None
        await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for frame in self.ws:
                self.received.append(json.loads(frame) if isinstance(frame, str) else frame)
                self._new.set()
        except ConnectionClosed as exc:
            self.close_reason = exc.rcvd.reason if exc.rcvd is not None else None
        finally:
            self.closed_at = time.monotonic()
            rcvd = self.ws.protocol.close_rcvd
            if self.close_reason is None and rcvd is not None:
                self.close_reason = rcvd.reason
            self._new.set()

    def next_id(self) -> str:
        self._ids += 1
        return f"x{self._ids}"

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message))

    async def wait(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first message received so far (or later) for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        start = 0
        while True:
            for item in self.received[start:]:
                if isinstance(item, dict) and predicate(item):
                    return item
            start = len(self.received)
            if self.closed_at is not None:
                raise AssertionError(f"connection closed ({self.close_reason}) before the message came")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("timed out waiting for a message")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)

    async def wait_after(self, mark: int, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Like :meth:`wait`, for messages received after ``mark`` (an index into ``received``)."""
        found = await self.wait(lambda m: any(m is x for x in self.received[mark:]) and predicate(m))
        return found

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        message = {**message, "id": self.next_id()}
        await self.send(message)
        return await self.wait(lambda m: m.get("id") == message["id"])

    async def login(self, account: OperatorAccount) -> str:
        answer = await self.request(
            {"type": "login", "name": account.name, "password": account.password, "totp": account.totp()}
        )
        assert answer["type"] == "login_ok", answer
        if answer["password_change_required"]:
            new = account.password + "-changed-1"
            ok = await self.request(
                {"type": "change_password", "old_password": account.password, "new_password": new}
            )
            assert ok["type"] == "ok", ok
            account.password = new
        return str(answer["token"])

    async def auth(self, token: str) -> None:
        answer = await self.request({"type": "auth", "token": token})
        assert answer["type"] == "login_ok", answer

    def screens(self) -> int:
        return sum(1 for item in self.received if isinstance(item, bytes))

    async def wait_closed(self, *, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        while self.closed_at is None and time.monotonic() < deadline:
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), max(0.01, deadline - time.monotonic()))
        assert self.closed_at is not None, "the connection was not closed"
        return self.closed_at


async def _active_session(broker: BrokerProcess, op: RawOperator, support: SupportProcess) -> str:
    """Claim the subscriber's request and have the subscriber grant screen viewing."""
    code = support.support_code()
    claimed = await op.request({"type": "claim", "code": code, "scopes": ["screen:view"]})
    assert claimed["type"] == "claimed", claimed
    session = str(claimed["session_id"])
    support.wait_for("View your screen")
    support.type("a")
    await op.send({"type": "watch", "id": op.next_id(), "session_id": session})
    await op.wait(
        lambda m: (
            m.get("type") == "session_state"
            and m["session_id"] == session
            and m["scopes"].get("screen:view") == "granted"
        )
    )
    return session


async def test_supervisor_is_read_only_and_announced(broker: BrokerProcess, tmp_path: Path) -> None:
    enrolled_agent(broker, tmp_path / "agent", "C-300")
    erin = add_operator(broker, "erin")
    sam = add_operator(broker, "sam", role="supervisor")
    support = start_support(tmp_path / "agent", "--test-pattern", "--test-monitors", "3")
    try:
        async with RawOperator(broker) as op, RawOperator(broker) as sup:
            await op.login(erin)
            await sup.login(sam)
            session = await _active_session(broker, op, support)
            await op.wait(lambda m: m.get("type") == "monitor_layout" and m["current"] == 1)

            # The supervisor joins: the operator is told who watches now, operator first.
            await sup.send({"type": "watch", "id": sup.next_id(), "session_id": session})
            expected = [
                {"name": "Erin (helpdesk)", "role": "operator", "read_only": False, "account": ""},
                {"name": "Sam (helpdesk)", "role": "supervisor", "read_only": True, "account": ""},
            ]
            state = await op.wait(
                lambda m: m.get("type") == "session_state" and len(m.get("viewers", [])) == 2
            )
            assert state["viewers"] == expected
            mine = await sup.wait(lambda m: m.get("type") == "session_state" and len(m["viewers"]) == 2)
            assert mine["viewers"] == expected

            # Read-only: switching the shared monitor and input are refused by the table.
            for hostile in (
                {"type": "screen_refresh", "session_id": session, "monitor": 3},
                {"type": "input", "session_id": session, "kind": "move", "x": 5, "y": 5},
                {"type": "scope_request", "id": "s1", "session_id": session, "scopes": ["input:control"]},
                {"type": "chat", "session_id": session, "text": "1. View your screen"},
            ):
                mark = len(sup.received)
                await sup.send(hostile)
                refusal = await sup.wait_after(mark, lambda m: m.get("type") == "error")
                assert refusal["code"] == "not_allowed", (hostile["type"], refusal)

            # The operator may switch; the first layout after the refusals is the operator's.
            await op.send({"type": "screen_refresh", "session_id": session, "monitor": 2})
            await op.wait(lambda m: m.get("type") == "monitor_layout" and m["current"] == 2)
            currents = [
                m["current"] for m in op.received if isinstance(m, dict) and m["type"] == "monitor_layout"
            ]
            assert 3 not in currents, currents
            assert "input applied" not in support.output.text()
    finally:
        support.stop()
    audit = broker.cli("audit", "log", "--subject", session).stdout
    assert "session.supervise" in audit


async def test_logout_ends_every_connection_of_the_token(broker: BrokerProcess, tmp_path: Path) -> None:
    enrolled_agent(broker, tmp_path / "agent", "C-400")
    erin = add_operator(broker, "erin")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        async with RawOperator(broker) as first, RawOperator(broker) as second:
            token = await first.login(erin)
            await second.auth(token)
            session = await _active_session(broker, first, support)
            await second.send({"type": "watch", "id": second.next_id(), "session_id": session})
            deadline = time.monotonic() + 30
            while second.screens() == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert second.screens() > 0, "the second connection never got the screen"

            logout = await first.request({"type": "logout"})
            logged_out = time.monotonic()
            assert logout["type"] == "ok"
            closed = await second.wait_closed()
            assert closed - logged_out <= 1.0, f"closed {closed - logged_out:.2f} s after logout"
            assert second.close_reason == "auth_required", (
                second.close_reason,
                [m for m in second.received if isinstance(m, dict)][-3:],
            )
            errors = [m for m in second.received if isinstance(m, dict) and m.get("type") == "error"]
            assert errors
            assert errors[-1]["code"] == "auth_required"
            # Nothing reached it after the close; the first connection is logged out, not watching.
            count = len(second.received)
            support.type("still there?")  # subscriber chat goes to viewers only
            await asyncio.sleep(0.5)
            assert len(second.received) == count
    finally:
        support.stop()


@pytest.mark.parametrize("action", ["lock", "disable"])
async def test_admin_lock_or_disable_ends_connections_within_a_second(
    broker: BrokerProcess, action: str
) -> None:
    erin = add_operator(broker, "erin")
    async with RawOperator(broker) as first, RawOperator(broker) as second:
        token = await first.login(erin)
        await second.auth(token)  # a second connection (a TOTP code is accepted once)
        result = await asyncio.to_thread(broker.cli, "operator", action, "erin")
        done = time.monotonic()
        assert "erin" in result.stdout
        for conn in (first, second):
            closed = await conn.wait_closed()
            assert closed - done <= 1.0, f"{action}: closed {closed - done:.2f} s after the CLI returned"
            assert conn.close_reason == "auth_required"
    # The account cannot log in again.
    async with RawOperator(broker) as again:
        answer = await again.request(
            {"type": "login", "name": "erin", "password": erin.password, "totp": erin.totp()}
        )
        assert answer["type"] == "error"


async def test_the_agent_is_told_who_watches(broker: BrokerProcess, tmp_path: Path) -> None:
    """A bare agent connection (the real certificate and key) sees the supervisor join."""
    from agent.receipts import decision_message
    from certs import load_private_key
    from protocol.codec import encode
    from protocol.receipts import ConsentReceipt

    agent_dir = tmp_path / "agent"
    serial = enrolled_agent(broker, agent_dir, "C-500")
    erin = add_operator(broker, "erin")
    sam = add_operator(broker, "sam", role="supervisor")
    ctx = client_context(broker, cert=agent_dir / "agent.pem", key=agent_dir / "agent-key.pem")
    key = load_private_key((agent_dir / "agent-key.pem").read_bytes())
    async with connect(
        broker.url + "/agent", ssl=ctx, ping_interval=None, compression=None, open_timeout=15
    ) as agent:
        seen: list[dict[str, Any]] = []

        async def next_of(kind: str) -> dict[str, Any]:
            while True:
                message: dict[str, Any] = json.loads(await asyncio.wait_for(agent.recv(), 30))
                seen.append(message)
                if message["type"] == kind:
                    return message

        await agent.send(json.dumps({"type": "hello", "versions": list(SUPPORTED_VERSIONS), "role": "agent"}))
        await agent.send(json.dumps({"type": "agent_status", "machine_name": "pc"}))
        await agent.send(json.dumps({"type": "support_request", "id": "r1"}))
        issued = await next_of("support_code")
        async with RawOperator(broker) as op, RawOperator(broker) as sup:
            await op.login(erin)
            await sup.login(sam)
            claimed = await op.request({"type": "claim", "code": issued["code"], "scopes": ["screen:view"]})
            session = claimed["session_id"]
            asked = await next_of("consent_request")
            receipt = ConsentReceipt(
                session_id=session,
                serial=serial,
                operator=asked["operator"],
                decision="answered",
                asked=("screen:view",),
                granted=("screen:view",),
                denied=(),
                time=time.time(),
            )
            await agent.send(encode(decision_message(receipt, key, id="d1")).decode())
            state = await next_of("session_state")
            while state["phase"] != "active":
                state = await next_of("session_state")
            assert [v["name"] for v in state["viewers"]] == ["Erin (helpdesk)"]
            await sup.send({"type": "watch", "id": sup.next_id(), "session_id": session})
            state = await next_of("session_state")
            while len(state["viewers"]) < 2:
                state = await next_of("session_state")
            assert state["viewers"] == [
                {"name": "Erin (helpdesk)", "role": "operator", "read_only": False, "account": ""},
                {"name": "Sam (helpdesk)", "role": "supervisor", "read_only": True, "account": ""},
            ]
            # The supervisor leaves: the agent is told at once.
            await sup.ws.close()  # type: ignore[union-attr]
            state = await next_of("session_state")
            while len(state["viewers"]) != 1:
                state = await next_of("session_state")
            assert state["viewers"][0]["name"] == "Erin (helpdesk)"
