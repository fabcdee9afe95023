"""``python -m agent request-support``: the subscriber's side of one support session.

Started by the subscriber (第31条①). It shows the support code, asks before anything is seen or
touched (第31条1項④: view and control separately, inventory item by item, default deny, no
answer in time = deny), signs every decision as a consent receipt, and lets the subscriber end or
withdraw at any moment: ``/end`` or ``/withdraw …`` in this terminal, the indicator's buttons,
``python -m agent end`` from another terminal, Ctrl-C, or closing the terminal.

The agent is the authority on consent (DESIGN §2): :class:`agent.consent_record.ConsentRecord`
is built only from the subscriber's answers and withdrawals, and it alone decides whether input
is applied, the screen captured, a monitor layout sent, a refresh or a monitor switch honoured,
and inventory collected. A broker message that contradicts it changes nothing and is logged
(scope names only). What the subscriber is shown as allowed comes from that record. Remote input
cannot answer a question or press the indicator (:mod:`agent.input.consent_guard`), and text from
elsewhere is shown only through :mod:`agent.session_view`. See docs/consent.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from datetime import datetime
from typing import TextIO
from zoneinfo import ZoneInfo

from certs import load_private_key
from protocol.errors import ErrorCode
from protocol.messages import (
    Chat,
    ConsentDecision,
    ConsentRequest,
    Error,
    InputEvent,
    Message,
    MonitorLayout,
    RestartRequest,
    ScreenRefresh,
    SessionEnd,
    SessionState,
    SupportCodeIssued,
    SupportRequest,
    Viewer,
)
from protocol.messages import Monitor as WireMonitor
from protocol.receipts import ConsentReceipt
from protocol.text import safe_text

from .connection import AgentClient
from .consent import INPUT_CONTROL, SCREEN_VIEW, ConsentError, scope_label
from .consent_record import ConsentRecord
from .i18n import error_text, t
from .identity import Identity
from .indicator_client import IndicatorProcess
from .input.consent_guard import DEFAULT_GRACE, ConsentGuard
from .instance import SessionPidFile
from .inventory.router import SSDP_MULTICAST
from .prompt import (
    Command,
    End,
    Grant,
    Help,
    LineReader,
    Withdraw,
    format_answer_summary,
    format_consent_prompt,
)
from .receipts import sign_receipt
from .screen.pipeline import FramePipeline
from .session_colleagues import ColleaguesMixin
from .session_input import InputMixin
from .session_questions import QuestionsMixin
from .session_restart import RestartMixin
from .session_view import SessionView, viewer_notices
from .sharing import CountingInputSink, FrameSource, InputSink, ScreenSharer, TestPatternSource
from .support_devices import PID_FILE, choose_consent_ui, default_devices, request_end

__all__ = [
    "EXIT_REFUSED",
    "EXIT_SESSION_GONE",
    "SupportSession",
    "choose_consent_ui",
    "default_devices",
    "request_end",
]

EXIT_REFUSED = 5
EXIT_SESSION_GONE = 6
"""``request-support`` exit code when the broker no longer knows the session (e.g. after a broker
restart): sharing stopped at once and the subscriber was told (issue 12 item 8)."""
SERVICE_TZ = ZoneInfo("Asia/Tokyo")  # 別記1: hours are Japan time

log = logging.getLogger("agent.support")


class SupportSession(QuestionsMixin, InputMixin, ColleaguesMixin, RestartMixin):
    def __init__(
        self,
        identity: Identity,
        *,
        lang: str,
        stdin: TextIO,
        out: TextIO,
        source: FrameSource | None,
        sink: InputSink | None = None,
        router_target: tuple[str, int] = SSDP_MULTICAST,
        consent_ui: frozenset[str] = frozenset({"terminal"}),
        indicator: bool = False,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self.identity = identity
        self.lang = lang
        self.out = out
        self.stdin = stdin
        self.view = SessionView(out, lang)
        self.reader = LineReader(stdin)
        self.source = source
        self.sink: InputSink = sink or CountingInputSink(self.say)
        self.key = load_private_key(identity.key_path.read_bytes())
        self.router_target = router_target
        self.consent_ui = consent_ui
        self.guard = ConsentGuard(grace)
        self.indicator = (
            IndicatorProcess(
                self.guard,
                lang=lang,
                on_withdraw_control=self._indicator_withdraw,
                on_end=self._indicator_end,
            )
            if indicator
            else None
        )
        self.client = AgentClient(identity, display=source is not None, on_message=self._on_message)
        self.session_id: str | None = None
        self.operator = ""
        self.viewers: tuple[Viewer, ...] = ()
        self._saw = False
        """Whether the record granted screen:view when the viewers were last announced."""
        self.record: ConsentRecord | None = None
        self.sharer: ScreenSharer | None = None
        self.done = asyncio.Event()
        self.exit_code = 0
        self._confirmed = False
        """A session_state for our session arrived on the current connection (resume confirmed)."""
        self._session_request_ids: set[str] = set()
        self._consent_tasks: set[asyncio.Task[None]] = set()
        self._request_id = 0
        self._mouse: object | None = None
        self._last_refusal_report = float("-inf")
        self._unreported_refusals = 0
        self.ignored_from_broker = 0
        self._receipt_lock = asyncio.Lock()
        QuestionsMixin.__init__(self)

    def say(self, line: str) -> None:
        self.view.say(line)

    def _next_id(self, *, session: bool = False) -> str:
        self._request_id += 1
        request_id = f"a{self._request_id}"
        if session:  # a not_found answer to this id means the broker no longer knows the session
            self._session_request_ids.add(request_id)
        return request_id

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> int:
        stop = asyncio.Event()
        self.client.on_state = self._on_connection_state
        client_task = asyncio.create_task(self.client.run(stop))
        stdin_task = asyncio.create_task(self._stdin_loop())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._signal_end)
        pid_file = SessionPidFile(self.identity.data_dir / PID_FILE).acquire()  # OS-locked: never stale
        try:
            done_task = asyncio.create_task(self.done.wait())
            await asyncio.wait({client_task, done_task}, return_when=asyncio.FIRST_COMPLETED)
            if client_task.done() and client_task.exception() is not None:
                raise client_task.exception()  # type: ignore[misc]
        finally:
            pid_file.release()
            await self._stop_everything()
            close = getattr(self.sink, "close", None)
            if callable(close):  # releases held keys and stops the local-input listener
                close()
            stop.set()
            stdin_task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(client_task, 10)
        return self.exit_code

    async def _stop_everything(self) -> None:
        """Stop sharing and input at once, close open questions, and take the indicator down."""
        await self._void_questions()  # the question is void: its window closes now
        if self.sharer is not None:
            await self.sharer.stop()
        release = getattr(self.sink, "release", None)
        if callable(release):
            release()
        if self.indicator is not None:
            await self.indicator.close()

    def _on_connection_state(self, state: str, delay: float) -> None:
        if state == "connected":
            asyncio.get_running_loop().create_task(self._request())
        else:
            # Nothing flows until the broker has confirmed our session on the next connection.
            self._confirmed = False
            if self.sharer is not None:
                asyncio.get_running_loop().create_task(self.sharer.stop())

    async def _request(self) -> None:
        """First connection: ask for support; after a reconnect: resume our session."""
        resume = self.session_id
        await self.client.send(SupportRequest(id=self._next_id(session=resume is not None), resume=resume))

    def _signal_end(self) -> None:
        if self.restarting:  # the OS is shutting down for the granted restart: resumed afterwards
            self.done.set()
            return
        asyncio.get_running_loop().create_task(self.end("subscriber closed the session"))

    async def end(self, reason: str) -> None:
        if self.session_id is None or self.client.runner is None:
            self.done.set()
            return
        with contextlib.suppress(Exception):
            await self.client.send(
                SessionEnd(id=self._next_id(session=True), session_id=self.session_id, reason=reason)
            )
        # The broker answers with the ended state; do not hang if it cannot.
        asyncio.get_running_loop().call_later(5.0, self.done.set)

    # -- from the broker --------------------------------------------------------------------------

    def _ignored(self, what: str, *scopes: str) -> None:
        """A broker message that contradicts the subscriber's record: changes nothing, is logged
        (its kind and scope names only, never its content)."""
        self.ignored_from_broker += 1
        log.warning("ignored from the broker: %s %s", what, " ".join(scopes))

    async def _on_message(self, client: AgentClient, msg: Message) -> None:
        if await self._resume_filter(msg):
            return
        if isinstance(msg, SupportCodeIssued):
            if self.session_id in (None, msg.session_id):
                self._confirmed = True  # our session is known on this connection
            if self.session_id is None:
                self.session_id = msg.session_id
                self.record = ConsentRecord(session_id=msg.session_id, serial=self.identity.serial)
                minutes = max(1, round((msg.expires_at - time.time()) / 60))
                self.say(t("support.code", self.lang, code=msg.code, minutes=minutes))
                self.say(t("support.waiting", self.lang))
            elif msg.session_id != self.session_id:
                self._ignored("support_code for another session")
        elif isinstance(msg, Error):
            await self._on_error(msg)
        elif isinstance(msg, ConsentRequest):
            if msg.session_id != self.session_id:
                self._ignored("consent_request for another session")
                return
            # A question about a new person (invited colleague, transfer) or about scopes.
            task = asyncio.create_task(self._consent_person(msg) if msg.viewer else self._consent(msg))
            self._consent_tasks.add(task)
            task.add_done_callback(self._consent_tasks.discard)
        elif isinstance(msg, SessionState):
            await self._on_state(msg)
        elif isinstance(msg, InputEvent):
            await self._on_input(msg)
        elif isinstance(msg, ScreenRefresh):
            self._on_refresh(msg)
        elif isinstance(msg, Chat) and msg.session_id == self.session_id:
            self.view.chat(msg.sender or self.operator, msg.text)
        elif isinstance(msg, RestartRequest):
            await self._on_restart_request(msg)

    def _on_refresh(self, msg: ScreenRefresh) -> None:
        record = self.record
        if record is None or msg.session_id != self.session_id or not record.permits("screen_refresh"):
            self._ignored("screen_refresh without screen:view", SCREEN_VIEW)
            return
        if self.sharer is not None and self.sharer.running:
            self.sharer.refresh(behind=msg.behind, monitor=msg.monitor)

    async def _on_error(self, msg: Error) -> None:
        shown = safe_text(error_text(msg.code, self.lang, msg.message), max_chars=300)
        if self.session_id is None and msg.code == ErrorCode.SERVICE_CLOSED.value:
            opening = datetime.fromtimestamp(time.time() + (msg.retry_after or 0), SERVICE_TZ)
            self.say(t("support.closed", self.lang, opening=opening.strftime("%m/%d %H:%M")))
            self.exit_code = EXIT_REFUSED
            self.done.set()
        elif self.session_id is None:
            self.say(t("support.refused", self.lang, reason=shown))
            self.exit_code = EXIT_REFUSED
            self.done.set()
        elif msg.code == ErrorCode.NOT_FOUND.value and (
            msg.id in self._session_request_ids or (msg.id is None and self._confirmed)
        ):
            await self._session_gone()
        else:
            self.say(f"[{msg.code}] {shown}")

    async def _session_gone(self) -> None:
        """The broker no longer knows our session (a restart): stop at once and say so."""
        if self.done.is_set():
            return
        self._confirmed = False
        if self.record is not None and not self.record.ended:
            self.record.end(time.time())  # nothing stays granted; no broker to send a receipt to
        await self._stop_everything()
        self.say(t("support.gone", self.lang))
        self.exit_code = EXIT_SESSION_GONE
        self.done.set()

    async def _on_state(self, state: SessionState) -> None:
        if state.session_id != self.session_id:
            self._ignored("session_state for another session")
            return
        self._confirmed = True
        if state.operator and state.operator != self.operator:
            self.operator = state.operator
            shown = safe_text(state.operator, max_chars=80)
            self.view.notice(t("support.claimed", self.lang, operator=shown))
        if state.phase == "ended":
            await self._stop_everything()
            by = safe_text(state.ended_by or "-", max_chars=32)
            self.say(t("support.ended", self.lang, by=by))
            self.done.set()
            return
        if self.record is not None:
            disagreement = self.record.disagreements(state)
            if disagreement:
                self._ignored("session_state contradicting the subscriber's consent", *disagreement)
        self._check_persons(state)
        notice = self._announce(state.viewers)
        await self._sync_sharing(notice=notice)

    def _announce(self, viewers: tuple[Viewer, ...] | None = None) -> str:
        """Tell the subscriber who joined or left, and who can see the screen: only while the
        agent's own record grants screen:view (DESIGN §2); returns the notice for the indicator.
        Held like chat while a question is open (:meth:`SessionView.notice`)."""
        record = self.record
        sees = record is not None and not record.ended and record.allows(SCREEN_VIEW)
        before = [(v.name, v.role, v.read_only) for v in self.viewers]
        if viewers is not None:
            self.viewers = viewers
        after = [(v.name, v.role, v.read_only) for v in self.viewers]
        lines = viewer_notices(before, after, saw=self._saw, sees=sees, lang=self.lang)
        self._saw = sees
        for line in lines:
            self.view.notice(line)
        return " ".join(lines)

    def _watchers(self) -> tuple[Viewer, ...]:
        """Who can see the screen: the broker's list, else the operator who claimed the session."""
        if self.viewers:
            return self.viewers
        return (Viewer(name=self.operator, role="operator"),) if self.operator else ()

    async def _sync_sharing(self, *, start: bool = True, notice: str = "") -> None:
        """Make sharing, input and the indicator match the record (stop first, start if ``start``)."""
        record = self.record
        viewing = record is not None and record.permits("screen_update")
        if not viewing and self.sharer is not None:
            await self.sharer.stop()
        if record is None or not record.permits("input"):
            # Control withdrawn: a key or button the operator held down must not stay down.
            release = getattr(self.sink, "release", None)
            if callable(release):
                release()
        watched = record is not None and (record.allows(SCREEN_VIEW) or record.allows(INPUT_CONTROL))
        if self.indicator is not None:
            if watched and record is not None:
                await self.indicator.show(viewers=self._watchers(), granted=record.granted, notice=notice)
                if self.indicator.unavailable:
                    self.say(t("support.indicator_unavailable", self.lang))
                    self.indicator = None
            else:
                await self.indicator.close()
        if not (start and viewing and self._confirmed) or self._receipt_lock.locked():
            return
        if self.source is not None and self.session_id is not None:
            if self.sharer is None:
                self.sharer = self._make_sharer(self.source, self.session_id)
                shared = getattr(self.source, "current", None)
                await self._send_layout(shared.index if shared is not None else 1)
            self.sharer.start()

    def _make_sharer(self, source: FrameSource, session_id: str) -> ScreenSharer:
        # The test pattern and `--lossless` go without JPEG: exact pixels for the viewer.
        lossless = isinstance(source, TestPatternSource) or bool(getattr(source, "lossless", False))
        return ScreenSharer(
            source,
            self._send_binary,
            pipeline=FramePipeline(lossless=lossless),
            on_monitor=self._send_layout,
            rtt=self._rtt,
        )

    async def _send_layout(self, current: int) -> None:
        """The monitor layout is screen-derived: sent only while the record grants screen:view."""
        record, source = self.record, self.source
        if (
            record is None
            or source is None
            or self.session_id is None
            or not record.permits("monitor_layout")
        ):
            self._ignored("monitor_layout without screen:view", SCREEN_VIEW)
            return
        monitors = tuple(
            WireMonitor(index=m.index, left=m.left, top=m.top, width=m.width, height=m.height)
            for m in source.monitors()
        )
        await self.client.send(MonitorLayout(session_id=self.session_id, monitors=monitors, current=current))

    def _rtt(self) -> float | None:
        runner = self.client.runner
        return runner.link.rtt if runner is not None else None

    async def _send_binary(self, data: bytes) -> None:
        record = self.record
        if record is None or not record.permits("screen_update") or not self._confirmed:
            return  # a frame captured just before a withdrawal (or a reconnect) is never sent
        if self.client.runner is not None:
            await self.client.runner.send_binary(data)

    # -- consent ----------------------------------------------------------------------------------

    async def _consent(self, request: ConsentRequest) -> None:
        record = self.record
        if record is None:
            return
        self.operator = request.operator
        before = record.granted
        with self.question("consent"):
            answer = await self._ask_consent(request, format_consent_prompt(request, self.lang))
            try:
                if answer is None:
                    receipt = record.timeout(request, time.time())
                else:
                    receipt = record.answer(request, answer, time.time())
            except ConsentError as exc:
                self._ignored(f"consent_request refused: {exc.code}")
                return
            self.say(format_answer_summary(receipt.granted, receipt.asked, self.lang))
        newly = set(receipt.granted) - before
        await self._after_change(receipt, newly_granted=bool(newly))
        await self._send_inventory(newly)

    async def _after_change(self, receipt: ConsentReceipt, *, newly_granted: bool = False) -> None:
        """Stop what is no longer granted at once, tell the broker (signed receipts, in order),
        then start what is granted. A new grant reaches the broker only after the guard's grace
        time, so the operator never sees "granted" while remote input is still refused."""
        await self._sync_sharing(start=False)
        async with self._receipt_lock:
            if newly_granted:
                await self._wait_grace()
            await self._send_receipt(receipt)
        record = self.record
        if record is not None:
            labels = ", ".join(scope_label(s, self.lang) for s in record.granted_in_order())
            self.say(t("support.scopes", self.lang, scopes=labels or t("support.none", self.lang)))
        await self._sync_sharing(notice=self._announce())

    async def _send_receipt(self, receipt: ConsentReceipt) -> None:
        assert self.session_id is not None
        text, signature = sign_receipt(receipt, self.key)
        await self.client.send(
            ConsentDecision(
                id=self._next_id(session=True), session_id=self.session_id, receipt=text, signature=signature
            )
        )

    # -- from the subscriber ----------------------------------------------------------------------

    async def _indicator_withdraw(self) -> None:
        await self._command(Withdraw(frozenset({INPUT_CONTROL})))

    async def _indicator_end(self) -> None:
        await self._command(End())

    async def _command(self, command: Command) -> None:
        record = self.record
        if self.session_id is None or record is None or record.ended:
            return
        if isinstance(command, End):
            await self.end("ended by the subscriber")
        elif isinstance(command, Withdraw):
            await self._after_change(record.withdraw(command.scopes, time.time()))
        elif isinstance(command, Grant):
            wanted = await self._confirm_grant(command.scopes)
            if wanted and not record.ended:
                await self._after_change(record.grant(wanted, time.time()), newly_granted=True)
        elif isinstance(command, Help):
            self.say(t("support.help", self.lang))
        elif command.text.strip():
            await self.client.send(Chat(session_id=self.session_id, text=command.text[:2000]))
