"""``python -m agent request-support``: the subscriber's side of one support session.

Started by the subscriber (第31条①). It shows the support code, asks before anything is seen or
touched (第31条1項④: view and control separately, inventory item by item, default deny, no
answer in time = deny), signs every decision as a consent receipt, and lets the subscriber end or
withdraw at any moment: ``/end`` or ``/withdraw …`` in this terminal, the indicator's buttons,
``python -m agent end`` from another terminal, Ctrl-C, or closing the terminal.

Every decision is the pure :class:`agent.core.AgentCore`'s (docs/agent-core.md): this module is
its adapter. It feeds the core the broker's messages, the subscriber's answers and the wall
clock, arms its timer, and runs the actions it answers with on the terminal (:mod:`agent.prompt`,
:mod:`agent.session_view`), the consent window, the indicator, the capture
(:class:`agent.sharing.ScreenSharer`), input injection, the inventory collectors and the OS
restart. The agent is the authority on consent (DESIGN §2): the core's
:class:`agent.consent_record.ConsentRecord` is built only from the subscriber's answers; a broker
message that contradicts it changes nothing and is logged (scope names only). Remote input cannot
answer a question or press the indicator (:mod:`agent.input.consent_guard`). See docs/consent.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Coroutine
from typing import Any, TextIO

import msgspec

from certs import load_private_key
from protocol.messages import Message, MonitorLayout
from protocol.messages import Monitor as WireMonitor
from protocol.scopes import SCOPE_CONTROL, SCOPE_VIEW
from wire.tasks import stop_task

from .connection import AgentClient
from .consent_record import ConsentRecord
from .core import AgentCore, CoreConfig
from .core import actions as act
from .core import inputs as inp
from .core.state import EXIT_REFUSED, EXIT_SESSION_GONE
from .i18n import t
from .identity import Identity
from .indicator_client import IndicatorProcess
from .input.consent_guard import DEFAULT_GRACE, ConsentGuard
from .instance import SessionPidFile
from .inventory.router import SSDP_MULTICAST
from .prompt import Command, End, Grant, Help, LineReader, Withdraw
from .receipts import sign_receipt
from .screen.pipeline import FramePipeline
from .session_colleagues import ColleaguesMixin
from .session_input import InputMixin
from .session_questions import QuestionsMixin
from .session_restart import RestartMixin
from .session_view import SessionView
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
        key = load_private_key(identity.key_path.read_bytes())
        self.core = AgentCore(
            CoreConfig(serial=identity.serial, sign=lambda r: sign_receipt(r, key), lang=lang, grace=grace)
        )
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
        self.sharer: ScreenSharer | None = None
        self.done = asyncio.Event()
        self.exit_code = 0
        self._consent_tasks: set[asyncio.Task[None]] = set()
        self._questions: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._batch = asyncio.Lock()
        self._timer_changed = asyncio.Event()
        self._mouse: object | None = None
        self._last_refusal_report = float("-inf")
        self._unreported_refusals = 0
        QuestionsMixin.__init__(self)

    # -- the core's state, as the desktop window and the tests read it ---------------------------

    @property
    def session_id(self) -> str | None:
        return self.core.session_id

    @property
    def record(self) -> ConsentRecord | None:
        return self.core.record

    @property
    def operator(self) -> str:
        return self.core.operator

    @property
    def resuming(self) -> bool:
        return self.core.resuming

    @resuming.setter
    def resuming(self, value: bool) -> None:
        self.core.resuming = value

    @property
    def restarting(self) -> bool:
        return self.core.restarting

    @property
    def ignored_from_broker(self) -> int:
        return self.core.ignored_from_broker

    def say(self, line: str) -> None:
        self.view.say(line)

    # -- feeding the core -------------------------------------------------------------------------

    async def feed(self, event: inp.Input | Message) -> None:
        """One input or broker message into the core at the wall clock's now; runs its actions."""
        async with self._batch:
            now = time.time()
            if isinstance(event, msgspec.Struct):
                actions = self.core.receive(event, now)
            else:
                actions = self.core.handle(event, now)
            await self._run_actions(actions)
        self._timer_changed.set()

    async def _timer_loop(self) -> None:
        """Arm the core's timer (aioquic's ``get_timer``/``handle_timer``)."""
        while True:
            self._timer_changed.clear()
            due = self.core.next_timer()
            delay = None if due is None else max(0.0, due - time.time())
            try:
                async with asyncio.timeout(delay):
                    await self._timer_changed.wait()
            except TimeoutError:
                async with self._batch:
                    await self._run_actions(self.core.handle_timer(time.time()))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- running the core's actions ---------------------------------------------------------------

    async def _run_actions(self, actions: list[act.Action]) -> None:
        notices: list[str] = []
        for action in actions:
            if isinstance(action, act.Send):
                with contextlib.suppress(ConnectionError):
                    await self.client.send(action.message)
            elif isinstance(action, act.Say):
                if action.notice:
                    notices.append(action.text)
                    self.view.notice(action.text)
                else:
                    self.say(action.text)
            elif isinstance(action, act.ShowChat):
                self.view.chat(action.sender, action.text)
            elif isinstance(action, act.AskConsent):
                self._ask_task(action.question, self._consent(action.question, action.request))
            elif isinstance(action, act.AskPerson):
                self._ask_task(action.question, self._consent_person(action.question, action.request))
            elif isinstance(action, act.CloseQuestion):
                task = self._questions.pop(action.question, None)
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
            elif isinstance(action, act.StartSharing):
                await self._start_sharing()
            elif isinstance(action, act.StopSharing):
                if self.sharer is not None:
                    await self.sharer.stop()
            elif isinstance(action, act.RefreshSharing):
                if self.sharer is not None and self.sharer.running:
                    self.sharer.refresh(behind=action.behind, monitor=action.monitor)
            elif isinstance(action, act.DenyInput):
                release = getattr(self.sink, "release", None)
                if callable(release):  # a key or button the operator held down must not stay down
                    release()
            elif isinstance(action, act.InjectInput):
                await self._inject(action.event)
            elif isinstance(action, act.ShowIndicator):
                await self._show_indicator(action, " ".join(notices))
            elif isinstance(action, act.CollectInventory):
                self._spawn(self._collect_and_feed(action))
            elif isinstance(action, act.SaveResume):
                self._save_resume(action)
            elif isinstance(action, act.Reboot):
                self._spawn(self._reboot())
            elif isinstance(action, act.Ignored):
                log.warning("ignored from the broker: %s %s", action.what, " ".join(action.scopes))
            elif isinstance(action, act.Finish):
                self.exit_code = action.exit_code
                self.done.set()

    def _ask_task(self, question: str, work: Coroutine[Any, Any, None]) -> None:
        task = self._spawn(work)
        self._questions[question] = task
        self._consent_tasks.add(task)
        task.add_done_callback(self._consent_tasks.discard)
        task.add_done_callback(lambda _t: self._questions.pop(question, None))

    async def _show_indicator(self, action: act.ShowIndicator, notice: str) -> None:
        if self.indicator is None:
            return
        if not action.granted:
            await self.indicator.close()
            return
        await self.indicator.show(viewers=action.viewers, granted=action.granted, notice=notice)
        if self.indicator.unavailable:
            self.say(t("support.indicator_unavailable", self.lang))
            self.indicator = None

    async def _collect_and_feed(self, action: act.CollectInventory) -> None:
        collected = await self._collect(action.items, ask_router_login=action.ask_router_login)
        await self.feed(collected)

    # -- sharing ----------------------------------------------------------------------------------

    async def _start_sharing(self) -> None:
        if self.source is None or self.session_id is None:
            return
        if self.sharer is None:
            self.sharer = self._make_sharer(self.source)
            shared = getattr(self.source, "current", None)
            await self._send_layout(shared.index if shared is not None else 1)
        self.sharer.start()

    def _make_sharer(self, source: FrameSource) -> ScreenSharer:
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
        source, session_id = self.source, self.session_id
        if source is None or session_id is None or not self.core.permits("monitor_layout"):
            log.warning("ignored from the broker: monitor_layout without screen:view %s", SCOPE_VIEW)
            return
        monitors = tuple(
            WireMonitor(index=m.index, left=m.left, top=m.top, width=m.width, height=m.height)
            for m in source.monitors()
        )
        with contextlib.suppress(ConnectionError):
            await self.client.send(MonitorLayout(session_id=session_id, monitors=monitors, current=current))

    def _rtt(self) -> float | None:
        runner = self.client.runner
        return runner.link.rtt if runner is not None else None

    async def _send_binary(self, data: bytes) -> None:
        if not self.core.permits("screen_update"):
            return  # a frame captured just before a withdrawal (or a reconnect) is never sent
        if self.client.runner is not None:
            await self.client.runner.send_binary(data)

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> int:
        stop = asyncio.Event()
        self.client.on_state = self._on_connection_state
        timer_task = asyncio.create_task(self._timer_loop())
        if self.source is not None:
            shared = getattr(self.source, "current", None)
            await self.feed(inp.CaptureReady(monitor=shared.index if shared is not None else 1))
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
            timer_task.cancel()
            await self._stop_everything()
            close = getattr(self.sink, "close", None)
            if callable(close):  # releases held keys and stops the local-input listener
                close()
            stop.set()
            stdin_task.cancel()
            for task in list(self._tasks):
                task.cancel()
            await stop_task(client_task, grace=10, what="broker connection")
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
        event = inp.Connected() if state == "connected" else inp.Disconnected()
        self._spawn(self.feed(event))

    def _signal_end(self) -> None:
        if self.restarting:  # the OS is shutting down for the granted restart: resumed afterwards
            self.done.set()
            return
        self._spawn(self.end("subscriber closed the session"))

    async def end(self, reason: str) -> None:
        if self.session_id is None or self.client.runner is None:
            self.done.set()
            return
        await self.feed(inp.EndRequested(reason=reason))

    async def _on_message(self, client: AgentClient, msg: Message) -> None:
        await self.feed(msg)

    # -- from the subscriber ----------------------------------------------------------------------

    async def _indicator_withdraw(self) -> None:
        await self._command(Withdraw(frozenset({SCOPE_CONTROL})))

    async def _indicator_end(self) -> None:
        await self._command(End())

    async def _command(self, command: Command) -> None:
        record = self.record
        if self.session_id is None or record is None or record.ended:
            return
        if isinstance(command, End):
            await self.end("ended by the subscriber")
        elif isinstance(command, Withdraw):
            await self.feed(inp.Withdrawn(scopes=frozenset(command.scopes)))
        elif isinstance(command, Grant):
            wanted = await self._confirm_grant(command.scopes)
            if wanted:
                await self.feed(inp.Granted(scopes=wanted))
        elif isinstance(command, Help):
            self.say(t("support.help", self.lang))
        else:
            await self.feed(inp.Typed(text=command.text))
