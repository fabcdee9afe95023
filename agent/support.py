"""``python -m agent request-support``: the subscriber's side of one support session.

Started by the subscriber (第31条①). It shows the support code, asks before anything is seen or
touched (第31条1項④: view and control separately, inventory item by item, default deny, no
answer in time = deny), signs every decision as a consent receipt, shares the screen only while
``screen:view`` is granted, applies input only while ``input:control`` is granted (checked here
again, whatever the broker forwarded), and lets the subscriber end or withdraw at any moment:
``/end`` or ``/withdraw …`` in this terminal, ``python -m agent end`` from another one, Ctrl-C,
or closing the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
import sys
import time
from datetime import datetime
from functools import partial
from pathlib import Path
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
    InventoryItem,
    InventoryReport,
    Message,
    MonitorLayout,
    ScreenRefresh,
    SessionEnd,
    SessionState,
    SupportCodeIssued,
    SupportRequest,
)
from protocol.messages import Monitor as WireMonitor
from protocol.receipts import ConsentReceipt

from .connection import AgentClient
from .consent import ConsentState, scope_label
from .i18n import error_text, t
from .identity import Identity
from .inventory.collect import collect, default_collector
from .inventory.items import Item
from .inventory.model import RouterCredentials
from .inventory.router import SSDP_MULTICAST, probe_router
from .prompt import (
    Command,
    End,
    Grant,
    Help,
    LineReader,
    Withdraw,
    ask_consent_dialog,
    format_consent_prompt,
    gui_available,
    hidden_input,
    parse_consent_answer,
)
from .prompt import parse_session_command as parse_command
from .receipts import sign_receipt
from .screen.pipeline import FramePipeline
from .sharing import CountingInputSink, FrameSource, InputSink, ScreenSharer, TestPatternSource

PID_FILE = "session.pid"
INVENTORY_PREFIX = "inventory:"
ITEM_IDS = frozenset(item.value for item in Item)
CREDENTIALS_TIMEOUT = 120.0
EXIT_REFUSED = 5
SERVICE_TZ = ZoneInfo("Asia/Tokyo")  # 別記1: hours are Japan time


class SupportSession:
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
    ) -> None:
        self.identity = identity
        self.lang = lang
        self.out = out
        self.stdin = stdin
        self.reader = LineReader(stdin)
        self.source = source
        self.sink: InputSink = sink or CountingInputSink(self.say)
        self.key = load_private_key(identity.key_path.read_bytes())
        self.router_target = router_target
        self.consent_ui = consent_ui
        self.collector = default_collector()
        self.client = AgentClient(identity, display=source is not None, on_message=self._on_message)
        self.session_id: str | None = None
        self.operator = ""
        self.consent: ConsentState | None = None
        self.sharer: ScreenSharer | None = None
        self.done = asyncio.Event()
        self.exit_code = 0
        self._answer: asyncio.Future[str | None] | None = None
        self._consent_tasks: set[asyncio.Task[None]] = set()
        self._request_id = 0

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def _next_id(self) -> str:
        self._request_id += 1
        return f"a{self._request_id}"

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
        pid_path = self.identity.data_dir / PID_FILE
        pid_path.write_text(str(os.getpid()))
        try:
            done_task = asyncio.create_task(self.done.wait())
            await asyncio.wait({client_task, done_task}, return_when=asyncio.FIRST_COMPLETED)
            if client_task.done() and client_task.exception() is not None:
                raise client_task.exception()  # type: ignore[misc]
        finally:
            pid_path.unlink(missing_ok=True)
            if self.sharer is not None:
                await self.sharer.stop()
            close = getattr(self.sink, "close", None)
            if callable(close):  # releases held keys and stops the local-input listener
                close()
            stop.set()
            stdin_task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(client_task, 10)
        return self.exit_code

    def _on_connection_state(self, state: str, delay: float) -> None:
        if state == "connected":
            asyncio.get_running_loop().create_task(self._request())

    async def _request(self) -> None:
        """First connection: ask for support; after a reconnect: resume our session."""
        await self.client.send(SupportRequest(id=self._next_id(), resume=self.session_id))

    def _signal_end(self) -> None:
        asyncio.get_running_loop().create_task(self.end("subscriber closed the session"))

    async def end(self, reason: str) -> None:
        if self.session_id is None or self.client.runner is None:
            self.done.set()
            return
        with contextlib.suppress(Exception):
            await self.client.send(SessionEnd(id=self._next_id(), session_id=self.session_id, reason=reason))
        # The broker answers with the ended state; do not hang if it cannot.
        asyncio.get_running_loop().call_later(5.0, self.done.set)

    # -- from the broker --------------------------------------------------------------------------

    async def _on_message(self, client: AgentClient, msg: Message) -> None:
        if isinstance(msg, SupportCodeIssued):
            first = self.session_id is None
            self.session_id = msg.session_id
            self.consent = self.consent or ConsentState(
                session_id=msg.session_id, serial=self.identity.serial
            )
            if first:
                minutes = max(1, round((msg.expires_at - time.time()) / 60))
                self.say(t("support.code", self.lang, code=msg.code, minutes=minutes))
                self.say(t("support.waiting", self.lang))
        elif isinstance(msg, Error):
            await self._on_error(msg)
        elif isinstance(msg, ConsentRequest):
            task = asyncio.create_task(self._consent(msg))
            self._consent_tasks.add(task)
            task.add_done_callback(self._consent_tasks.discard)
        elif isinstance(msg, SessionState):
            await self._on_state(msg)
        elif isinstance(msg, InputEvent):
            await self._on_input(msg)
        elif isinstance(msg, ScreenRefresh):
            if self.sharer is not None:
                self.sharer.refresh(behind=msg.behind, monitor=msg.monitor)
        elif isinstance(msg, Chat):
            self.say(t("support.chat", self.lang, sender=msg.sender or self.operator, text=msg.text))

    async def _on_error(self, msg: Error) -> None:
        if self.session_id is None and msg.code == ErrorCode.SERVICE_CLOSED.value:
            opening = datetime.fromtimestamp(time.time() + (msg.retry_after or 0), SERVICE_TZ)
            self.say(t("support.closed", self.lang, opening=opening.strftime("%m/%d %H:%M")))
            self.exit_code = EXIT_REFUSED
            self.done.set()
        elif self.session_id is None:
            self.say(t("support.refused", self.lang, reason=error_text(msg.code, self.lang, msg.message)))
            self.exit_code = EXIT_REFUSED
            self.done.set()
        else:
            self.say(f"[{msg.code}] {error_text(msg.code, self.lang, msg.message)}")

    async def _on_state(self, state: SessionState) -> None:
        if state.operator and state.operator != self.operator:
            self.operator = state.operator
            self.say(t("support.claimed", self.lang, operator=state.operator))
        if state.phase == "ended":
            if self.sharer is not None:
                await self.sharer.stop()
            self.say(t("support.ended", self.lang, by=state.ended_by or "-"))
            self.done.set()
            return
        granted = [scope for scope, status in state.scopes.items() if status == "granted"]
        labels = ", ".join(scope_label(s, self.lang) for s in granted) or t("support.none", self.lang)
        self.say(t("support.scopes", self.lang, scopes=labels))
        await self._sync_sharing()

    async def _sync_sharing(self) -> None:
        viewing = self.consent is not None and self.consent.allows("screen:view")
        if viewing and self.source is not None and self.session_id is not None:
            if self.sharer is None:
                source, session_id = self.source, self.session_id

                async def send_layout(current: int) -> None:
                    monitors = tuple(
                        WireMonitor(index=m.index, left=m.left, top=m.top, width=m.width, height=m.height)
                        for m in source.monitors()
                    )
                    await self.client.send(
                        MonitorLayout(session_id=session_id, monitors=monitors, current=current)
                    )

                # The test pattern and `--lossless` go without JPEG: exact pixels for the viewer.
                lossless = isinstance(source, TestPatternSource) or bool(getattr(source, "lossless", False))
                self.sharer = ScreenSharer(
                    source,
                    self._send_binary,
                    pipeline=FramePipeline(lossless=lossless),
                    on_monitor=send_layout,
                    rtt=self._rtt,
                )
                shared = getattr(source, "current", None)
                await send_layout(shared.index if shared is not None else 1)
            self.sharer.start()
        elif self.sharer is not None:
            await self.sharer.stop()
        if self.consent is None or not self.consent.allows("input:control"):
            # Control withdrawn: a key or button the operator held down must not stay down.
            release = getattr(self.sink, "release", None)
            if callable(release):
                release()

    def _rtt(self) -> float | None:
        runner = self.client.runner
        return runner.link.rtt if runner is not None else None

    async def _send_binary(self, data: bytes) -> None:
        if self.client.runner is not None:
            await self.client.runner.send_binary(data)

    async def _on_input(self, event: InputEvent) -> None:
        # The broker forwards input only with control granted; we check again before applying.
        if (
            self.consent is None
            or not self.consent.allows("input:control")
            or event.session_id != self.session_id
        ):
            self.say(t("support.input_refused", self.lang))
            await self.client.send(
                Error(code=ErrorCode.CONSENT_REQUIRED.value, message="input:control is not granted")
            )
            return
        try:
            self.sink.apply(event)
        except Exception as exc:  # an X error must not end the session; never log the event itself
            logging.getLogger("agent.support").warning(
                "could not apply %s input: %s", event.kind, type(exc).__name__
            )

    # -- consent ----------------------------------------------------------------------------------

    async def _consent(self, request: ConsentRequest) -> None:
        assert self.consent is not None
        self.operator = request.operator
        answer = await self._ask_consent(request)
        now = time.time()
        before = self.consent.granted
        if answer is None:
            receipt = self.consent.timeout(request, now)
        else:
            receipt = self.consent.answer(request, answer, now)
        await self._send_receipt(receipt)
        await self._sync_sharing()
        await self._send_inventory(set(receipt.granted) - before)

    async def _ask_consent(self, request: ConsentRequest) -> set[str] | None:
        """Ask in the terminal, in a window, or both (first answer wins); None = no answer in time."""
        waits: list[asyncio.Task[set[str] | None]] = []
        if "terminal" in self.consent_ui:
            self.say(format_consent_prompt(request, self.lang))
            waits.append(asyncio.create_task(self._terminal_answer(request)))
        if "dialog" in self.consent_ui:
            waits.append(asyncio.create_task(ask_consent_dialog(request, lang=self.lang)))
        try:
            done, _ = await asyncio.wait(waits, timeout=request.timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is None:
                return task.result()
        return None

    async def _terminal_answer(self, request: ConsentRequest) -> set[str] | None:
        self._answer = asyncio.get_running_loop().create_future()
        try:
            line = await self._answer
        finally:
            self._answer = None
        return None if line is None else parse_consent_answer(line, request.scopes)

    async def _ask_line(self, prompt: str, timeout: float, *, secret: bool = False) -> str | None:
        """One line typed by the subscriber (or None after ``timeout``); a ``secret`` one is not
        echoed by the terminal."""
        self.say(prompt)
        self._answer = asyncio.get_running_loop().create_future()
        with hidden_input(self.stdin) if secret else contextlib.nullcontext(False) as hidden:
            try:
                return await asyncio.wait_for(asyncio.shield(self._answer), timeout)
            except TimeoutError:
                return None
            finally:
                self._answer = None
                if hidden:
                    self.say("")  # the Enter was not echoed either

    async def _send_inventory(self, newly_granted: set[str]) -> None:
        """Collect exactly the items just granted (別紙5: item by item) and send them.

        Only those collectors run; refused items are never read. Router credentials are never read
        from the router or the system: the subscriber may type them in here, or skip (別紙5 (11)).
        """
        items = [
            Item(scope.removeprefix(INVENTORY_PREFIX))
            for scope in sorted(newly_granted)
            if scope.startswith(INVENTORY_PREFIX)
            and scope.removeprefix(INVENTORY_PREFIX) in Item.__members__.values()
        ]
        if not items or self.session_id is None:
            return
        credentials = None
        if Item.ROUTER in items:
            account = await self._ask_line(t("support.router_account", self.lang), CREDENTIALS_TIMEOUT)
            if account:
                password = await self._ask_line(
                    t("support.router_password", self.lang), CREDENTIALS_TIMEOUT, secret=True
                )
                credentials = RouterCredentials(
                    account=account.strip()[:128], password=(password or "")[:128]
                )
        probe = (
            partial(probe_router, target=self.router_target, timeout=2.0) if Item.ROUTER in items else None
        )
        results = await asyncio.to_thread(
            collect,
            items,
            collector=self.collector,
            cert_serial=self.identity.serial,
            router_probe=probe,
            router_credentials=credentials,
        )
        report = InventoryReport(
            id=self._next_id(),
            session_id=self.session_id,
            items=tuple(
                InventoryItem(item=r.item.value, available=r.available, value=r.value, reason=r.reason)
                for r in results
            ),
            router_account=credentials.account if credentials else None,
            router_password=credentials.password if credentials else None,
        )
        await self.client.send(report)
        labels = ", ".join(scope_label(INVENTORY_PREFIX + r.item.value, self.lang) for r in results)
        self.say(t("support.inventory_sent", self.lang, items=labels))

    async def _send_receipt(self, receipt: ConsentReceipt) -> None:
        assert self.session_id is not None
        text, signature = sign_receipt(receipt, self.key)
        await self.client.send(
            ConsentDecision(id=self._next_id(), session_id=self.session_id, receipt=text, signature=signature)
        )

    # -- from the subscriber ----------------------------------------------------------------------

    async def _stdin_loop(self) -> None:
        while True:
            line = await self.reader.readline(None)
            if line is None:  # EOF: the terminal went away; keep the session until told otherwise
                if self._answer is not None and not self._answer.done():
                    self._answer.set_result("")
                return
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(line)
                continue
            await self._command(parse_command(line))

    async def _command(self, command: Command) -> None:
        if self.session_id is None or self.consent is None:
            return
        now = time.time()
        if isinstance(command, End):
            await self.end("ended by the subscriber")
        elif isinstance(command, Withdraw):
            await self._send_receipt(self.consent.withdraw(command.scopes, now))
            await self._sync_sharing()
        elif isinstance(command, Grant):
            await self._send_receipt(self.consent.grant(command.scopes, now))
            await self._sync_sharing()
        elif isinstance(command, Help):
            self.say(t("support.help", self.lang))
        elif command.text.strip():
            await self.client.send(Chat(session_id=self.session_id, text=command.text[:2000]))


def request_end(data_dir: Path) -> bool:
    """``python -m agent end``: ask the running session (another process) to end."""
    path = data_dir / PID_FILE
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return False
    return True


def default_devices(
    *, test_pattern: bool, lossless: bool = False, monitor: int = 1, test_monitors: int = 1
) -> tuple[FrameSource | None, InputSink | None]:
    """The real screen and input where there is a display; a test pattern on request; else none
    (a headless PC still gets chat and inventory, DESIGN §2 / issue: no screen).

    ``lossless`` shares the real screen without JPEG; ``monitor`` is the monitor shared first
    (mss numbering, 0 = all; an unknown number falls back to 1). A screen that can be captured
    but not controlled is still shared; input is then dropped (:class:`NoInputSink`).
    ``test_monitors`` is how many monitors the test pattern has.
    """
    if test_pattern:
        return TestPatternSource(animate=True, monitors=test_monitors), None
    log = logging.getLogger("agent.support")
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return None, None
    try:
        from .screen_source import CaptureSource, InjectorSink, NoInputSink

        source = CaptureSource(monitor, lossless=lossless)
    except Exception as exc:  # no usable display: chat and inventory only
        log.info("no screen to share: %s", exc)
        return None, None
    try:
        return source, InjectorSink(source)
    except Exception as exc:
        log.warning("remote control unavailable: %s", exc)
        return source, NoInputSink(type(exc).__name__)


def choose_consent_ui(requested: str, stdin: TextIO) -> frozenset[str]:
    """Where to ask for consent: ``terminal``, ``dialog``, ``both``, or ``auto``.

    ``auto``: in a terminal, the terminal (and a window as well where a display exists); started
    without a terminal (a desktop launcher, stdin on /dev/null), a window; with input from a pipe
    or a file (scripts, tests), the pipe.
    """
    if requested != "auto":
        return frozenset({"terminal", "dialog"} if requested == "both" else {requested})
    window = gui_available()
    try:
        if stdin.isatty():
            return frozenset({"terminal", "dialog"} if window else {"terminal"})
        mode = os.fstat(stdin.fileno()).st_mode
    except (OSError, ValueError):
        return frozenset({"dialog"} if window else {"terminal"})
    if stat.S_ISCHR(mode) and window:  # /dev/null: nobody will type here
        return frozenset({"dialog"})
    return frozenset({"terminal"})
