"""The subscriber's window: one window, Japanese first, large text, keyboard only, high contrast.

Screens: register (an enrollment file or link, then "accept the certificate?"), the big
"サポートを依頼する" button, the support code in large digits, the operator's name once claimed,
chat, and "終了". The session itself is the terminal's :class:`~agent.support.SupportSession`,
run through :mod:`agent.desktop.bridge`; consent is asked in its Tk consent window.

Tk rather than PySide6: Tk ships with Python on Windows and macOS (python3-tk on Debian), adds no
60 MB Qt runtime to the installers, is already what the consent dialog uses, and the window is a
handful of labels and buttons. Its accessibility is weaker than Qt's (no screen-reader tree), which
is why the window relies on very large text, strong contrast, and full keyboard use instead.

Keyboard: Tab / Shift+Tab move between controls (a thick orange focus ring), Enter or Space
activates, Enter in the message field sends; Ctrl + / Ctrl - / Ctrl 0 scale every text.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sys
import threading
import time
import tkinter as tk
from collections.abc import Callable
from pathlib import Path
from tkinter import filedialog
from tkinter import font as tkfont
from typing import Any, Final, Literal, TextIO

from protocol.text import safe_text

from ..identity import Identity, load_identity
from .bridge import (
    END_WAIT,
    CodeShown,
    Event,
    Finished,
    Line,
    OperatorShown,
    Resumable,
    SessionBridge,
    load_resumable,
)
from .enrollfile import EnrollFileError, EnrollInfo, load
from .texts import tr

BG: Final = "#ffffff"
FG: Final = "#000000"
PRIMARY: Final = "#003c8f"
DANGER: Final = "#a00000"
FOCUS: Final = "#ff8c00"
SIZES: Final = {"base": 18, "big": 26, "code": 72}
"""Point sizes at scale 1.0: body text, headings and buttons, the support code."""
SCALE_STEPS: Final = (0.8, 1.0, 1.25, 1.5, 2.0)
POLL_MS: Final = 100
GEOMETRY: Final = "900x700"
WRAP: Final = 820
"""Pixels a line of text may take before it wraps (the window's width less its margins)."""
CONFIRM_WAIT: Final = 300.0
"""Seconds the enrollment waits for the subscriber to accept the certificate (then: declined)."""
RESUME_TIMEOUT: Final = 60.0
"""Seconds the subscriber has to confirm continuing an interrupted session; then it ends."""
CHAT_LINES: Final = 500
"""Lines kept in the message area."""


class DesktopApp:
    def __init__(
        self,
        root: tk.Tk,
        *,
        data_dir: Path,
        lang: str,
        test_pattern: bool = False,
        trace: TextIO | None = None,
        scale: float = 1.0,
        resume_timeout: float = RESUME_TIMEOUT,
    ) -> None:
        self.root = root
        self.resume_timeout = resume_timeout
        self.data_dir = data_dir
        self.lang = lang
        self.test_pattern = test_pattern
        self._trace = trace
        self.scale = scale
        self.bridge: SessionBridge | None = None
        self.ui_events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.closing = False
        self.fonts = {name: tkfont.Font(root=root, size=size) for name, size in SIZES.items()}
        self.fonts["big"].configure(weight="bold")
        self.fonts["code"].configure(weight="bold", family="DejaVu Sans Mono")
        self._apply_scale()
        root.title(tr("title", lang) + " / Remote Support")
        root.configure(bg=BG)
        root.geometry(GEOMETRY)
        root.minsize(640, 480)
        root.protocol("WM_DELETE_WINDOW", self.quit)
        root.report_callback_exception = self._on_callback_error
        for seq, step in (
            ("<Control-plus>", 1),
            ("<Control-equal>", 1),
            ("<Control-minus>", -1),
            ("<Control-0>", 0),
        ):
            root.bind_all(seq, self._zoomer(step))
        self.body = tk.Frame(root, bg=BG, padx=32, pady=24)
        self.body.pack(fill="both", expand=True)
        self.operator: tk.Label | None = None
        self.chat: tk.Text | None = None
        identity = load_identity(data_dir)
        left_over = load_resumable(data_dir) if identity is not None else None
        if left_over is not None:
            self.show_resume(left_over)
        elif identity is not None:
            self.show_idle()
        else:
            self.show_enroll()
        root.after(POLL_MS, self.poll)

    def _on_callback_error(self, kind: type[BaseException], exc: BaseException, _tb: object) -> None:
        """A bug in a button's handler: a line on stderr and a plain message, never a traceback."""
        print(f"[desktop_error] {kind.__name__}", file=sys.stderr)
        with contextlib.suppress(tk.TclError):
            self.label(tr("error", self.lang, code=kind.__name__), fg=DANGER)

    # -- look and feel ------------------------------------------------------------------------------

    def _apply_scale(self) -> None:
        for name, size in SIZES.items():
            self.fonts[name].configure(size=round(size * self.scale))

    def _zoomer(self, step: int) -> Callable[[object], None]:
        return lambda _event: self.zoom(step)

    def zoom(self, step: int) -> None:
        if step == 0:
            self.scale = 1.0
        else:
            bigger = [s for s in SCALE_STEPS if (s > self.scale if step > 0 else s < self.scale)]
            if bigger:
                self.scale = min(bigger) if step > 0 else max(bigger)
        self._apply_scale()
        self.trace("zoom", scale=self.scale)

    def trace(self, screen: str, **fields: object) -> None:
        """``--trace``: one line per screen shown (for support staff and tests); never chat text."""
        if self._trace is not None:
            extra = "".join(f" {k}={v}" for k, v in fields.items())
            print(f"desktop: screen={screen}{extra}", file=self._trace, flush=True)

    def clear(self) -> None:
        for child in self.body.winfo_children():
            child.destroy()
        self.operator = None
        self.chat = None

    def label(self, text: str, font: str = "base", **kw: Any) -> tk.Label:
        options: dict[str, Any] = {"bg": BG, "fg": FG, "wraplength": WRAP, "justify": "left", **kw}
        widget = tk.Label(self.body, text=text, font=self.fonts[font], **options)
        widget.pack(anchor="w", pady=(0, 12))
        return widget

    def button(
        self,
        text: str,
        command: Callable[[], None],
        *,
        color: str = PRIMARY,
        big: bool = True,
        parent: tk.Misc | None = None,
        side: Literal["top", "left"] = "top",
    ) -> tk.Button:
        widget = tk.Button(
            parent or self.body,
            text=text,
            command=command,
            font=self.fonts["big" if big else "base"],
            bg=color,
            fg="#ffffff",
            activebackground=FG,
            activeforeground="#ffffff",
            highlightthickness=5,
            highlightcolor=FOCUS,
            highlightbackground=BG,
            padx=24,
            pady=12,
            relief="flat",
            takefocus=True,
        )
        widget.bind("<Return>", lambda _e: widget.invoke())
        widget.bind("<KP_Enter>", lambda _e: widget.invoke())
        widget.pack(anchor="w", pady=8, padx=(0, 16), side=side)
        return widget

    # -- screens ------------------------------------------------------------------------------------

    def show_enroll(self, error: str = "") -> None:
        self.clear()
        self.label(tr("title", self.lang), "big")
        self.label(tr("enroll.intro", self.lang))
        if error:
            self.label(error, fg=DANGER)
        entry = tk.Entry(
            self.body, font=self.fonts["base"], width=48, highlightthickness=4, highlightcolor=FOCUS
        )
        entry.pack(anchor="w", pady=8, fill="x")
        entry.bind("<Return>", lambda _e: self.enroll_from(entry.get()))

        def choose() -> None:
            path = filedialog.askopenfilename(
                parent=self.root, filetypes=[("isp-enroll", "*.isp-enroll *.json"), ("*", "*")]
            )
            if path:
                entry.delete(0, "end")
                entry.insert(0, path)
                self.enroll_from(path)

        self.button(tr("enroll.choose", self.lang), choose, big=False)
        self.button(tr("enroll.go", self.lang), lambda: self.enroll_from(entry.get()))
        self.button(tr("close", self.lang), self.quit, color=DANGER, big=False)
        entry.focus_set()
        self.trace("enroll", error=error or "-")

    def enroll_from(self, source: str) -> None:
        try:
            info = load(source)
        except EnrollFileError as exc:
            self.show_enroll(tr("enroll.failed", self.lang, code=f"{exc.code}: {exc}"))
            return
        self.clear()
        self.label(tr("enroll.working", self.lang), "big")
        self.trace("enrolling")
        threading.Thread(target=self._enroll_worker, args=(info,), daemon=True).start()

    def _enroll_worker(self, info: EnrollInfo) -> None:
        from ..enroll import enroll

        answer: queue.Queue[bool] = queue.Queue()

        def confirm(fingerprint: str) -> bool:
            self.ui_events.put(("confirm", (info, fingerprint, answer)))
            try:
                return answer.get(timeout=CONFIRM_WAIT)
            except queue.Empty:
                return False

        try:
            asyncio.run(
                enroll(
                    broker_url=info.broker,
                    contract_id=info.contract_id,
                    token=info.token,
                    ca_fingerprint=info.ca_fingerprint,
                    data_dir=self.data_dir,
                    confirm=confirm,
                )
            )
        except Exception as exc:  # every refusal has a code; never a traceback in the window
            self.ui_events.put(("enroll_failed", getattr(exc, "code", type(exc).__name__)))
            return
        self.ui_events.put(("enrolled", None))

    def show_confirm(self, info: EnrollInfo, fingerprint: str, answer: queue.Queue[bool]) -> None:
        self.clear()
        self.label(tr("enroll.confirm", self.lang, broker=info.broker, contract=info.contract_id))
        self.label("SHA-256: " + ":".join(fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2)))
        yes = self.button(tr("enroll.yes", self.lang), lambda: answer.put(True))
        self.button(tr("enroll.no", self.lang), lambda: answer.put(False), color=DANGER)
        yes.focus_set()
        self.trace("confirm")

    def show_idle(self, message: str = "") -> None:
        self.clear()
        self.label(tr("title", self.lang), "big")
        if message:
            self.label(message)
        self.label(tr("idle.intro", self.lang))
        ask = self.button(tr("request", self.lang), self.request_support)
        ask.configure(font=self.fonts["big"], padx=48, pady=28)
        self.button(tr("end", self.lang), self.quit, color=DANGER, big=False)
        self.label(tr("keys", self.lang))
        ask.focus_set()
        self.trace("idle")

    def show_resume(self, left_over: Resumable) -> None:
        """After the window was restarted mid-session: continue with the same operator, no new
        code, only if the subscriber says so in time (issue 16); otherwise end it at the broker."""
        self.clear()
        name = safe_text(left_over.operator, max_chars=64)
        seconds = round(self.resume_timeout)
        self.label(tr("title", self.lang), "big")
        self.label(tr("resume.ask", self.lang, name=name, seconds=seconds))
        answered = False

        def answer(resume: bool) -> None:
            nonlocal answered
            if answered:
                return
            answered = True
            self.trace("resume", answer="yes" if resume else "no")
            self.start_bridge(left_over, end_on_resume=not resume)

        yes = self.button(tr("resume.yes", self.lang), lambda: answer(True))
        self.button(tr("resume.no", self.lang), lambda: answer(False), color=DANGER)
        self.root.after(int(self.resume_timeout * 1000), lambda: answer(False))
        yes.focus_set()
        self.trace("resume_ask", operator=name.replace(" ", "_"))

    def start_bridge(self, resume: Resumable | None = None, *, end_on_resume: bool = False) -> None:
        identity = load_identity(self.data_dir)
        if identity is None:
            self.show_enroll()
            return
        self.bridge = SessionBridge(
            identity,
            lang=self.lang,
            test_pattern=self.test_pattern,
            resume=resume,
            end_on_resume=end_on_resume,
        )
        self.bridge.start()
        self.show_session(identity)

    def request_support(self) -> None:
        self.start_bridge()

    def show_session(self, identity: Identity) -> None:
        self.clear()
        self.code_label = self.label(tr("connecting", self.lang), "big")
        self.code = self.label("", "code")
        self.code_help = self.label("")
        self.operator = self.label("", "big")
        # Bottom up, so "終了" and the message field stay visible however large the text is.
        bar = tk.Frame(self.body, bg=BG)
        bar.pack(side="bottom", fill="x")
        row = tk.Frame(self.body, bg=BG)
        row.pack(side="bottom", fill="x")
        entry = tk.Entry(row, font=self.fonts["base"], highlightthickness=4, highlightcolor=FOCUS)
        entry.pack(side="left", fill="x", expand=True, pady=4)

        def send(_e: object = None) -> None:
            if self.bridge is not None:
                self.bridge.send_chat(entry.get())
            entry.delete(0, "end")

        entry.bind("<Return>", send)
        self.button(tr("chat.send", self.lang), send, big=False, parent=row, side="left")
        end = self.button(tr("end", self.lang), self.end_session, color=DANGER, parent=bar, side="left")
        tk.Label(self.body, text=tr("chat.label", self.lang), font=self.fonts["base"], bg=BG, fg=FG).pack(
            anchor="w"
        )
        self.chat = tk.Text(
            self.body, height=4, font=self.fonts["base"], bg=BG, fg=FG, wrap="word", state="disabled",
            highlightthickness=0, takefocus=False,  # read-only and scrolled to the end: no Tab trap in it
        )  # fmt: skip
        self.chat.pack(fill="both", expand=True, pady=4)
        end.focus_set()
        self.trace("connecting")

    def on_code(self, event: CodeShown) -> None:
        if self.operator is None:
            return
        minutes = max(1, round((event.expires_at - time.time()) / 60))
        self.code_label.configure(text=tr("code.label", self.lang))
        self.code.configure(text=f"{event.code[:3]} {event.code[3:]}")
        self.code_help.configure(text=tr("code.help", self.lang, minutes=minutes))
        self.trace("code", code=event.code)

    def on_operator(self, event: OperatorShown) -> None:
        if self.operator is None:
            return
        for widget in (self.code_label, self.code, self.code_help):
            widget.pack_forget()  # the code is used up; the name is what matters now
        self.operator.configure(text=tr("operator", self.lang, name=event.name))
        self.trace("claimed", operator=event.name.replace(" ", "_"))

    def on_line(self, event: Line) -> None:
        if self.chat is None:
            return
        self.chat.configure(state="normal")
        self.chat.insert("end", event.text + "\n")
        if int(self.chat.index("end-1c").split(".")[0]) > CHAT_LINES:
            self.chat.delete("1.0", "2.0")
        self.chat.see("end")
        self.chat.configure(state="disabled")

    def on_finished(self, event: Finished) -> None:
        last = ""
        if self.chat is not None:
            last = self.chat.get("end-2l", "end-1c").strip()
        self.bridge = None
        if self.closing:
            self.root.destroy()
            return
        self.clear()
        self.label(tr("ended", self.lang), "big")
        if last:
            self.label(last)
        if event.error:
            self.label(tr("error", self.lang, code=event.error), fg=DANGER)
        again = self.button(tr("again", self.lang), self.request_support)
        self.button(tr("close", self.lang), self.quit, color=DANGER)
        again.focus_set()
        self.trace("ended", exit=event.exit_code, error=event.error or "-")

    def end_session(self) -> None:
        if self.bridge is not None:
            self.trace("ending")
            threading.Thread(target=self.bridge.end, daemon=True).start()

    def quit(self) -> None:
        """ "終了" / closing the window: end a running session first (bounded wait), then close."""
        if self.bridge is not None and self.bridge.running:
            self.closing = True
            self.end_session()
            self.root.after(int(END_WAIT * 1000), self.root.destroy)
            return
        self.trace("closed")
        self.root.destroy()

    # -- events from the worker threads -------------------------------------------------------------

    def poll(self) -> None:
        handlers: dict[type, Callable[[Any], None]] = {
            CodeShown: self.on_code,
            OperatorShown: self.on_operator,
            Line: self.on_line,
            Finished: self.on_finished,
        }
        if self.bridge is not None:
            bridge = self.bridge
            for _ in range(200):  # bounded per tick
                try:
                    event: Event = bridge.events.get_nowait()
                except queue.Empty:
                    break
                handlers[type(event)](event)
                if isinstance(event, Finished):
                    break
        for _ in range(20):
            try:
                kind, value = self.ui_events.get_nowait()
            except queue.Empty:
                break
            if kind == "confirm":
                self.show_confirm(*value)
            elif kind == "enrolled":
                self.show_idle(tr("enroll.done", self.lang))
            elif kind == "enroll_failed":
                self.show_enroll(tr("enroll.failed", self.lang, code=value))
        with contextlib.suppress(tk.TclError):  # the window is gone
            self.root.after(POLL_MS, self.poll)


def run(
    *,
    data_dir: Path,
    lang: str,
    autostart: bool,
    test_pattern: bool,
    trace: bool,
    scale: float,
    resume_timeout: float = RESUME_TIMEOUT,
) -> int:
    """``isp-agent-desktop``: 0 when closed; 2 with ``[no_display]`` when no window can open."""
    if autostart and load_identity(data_dir) is None:
        return 0  # at login on a PC (or for a user) that is not registered: stay quiet
    try:
        root = tk.Tk(className="isp-remote-support")
    except tk.TclError as exc:
        print(f"[no_display] {exc}", file=sys.stderr)
        return 2
    app = DesktopApp(
        root,
        data_dir=data_dir,
        lang=lang,
        test_pattern=test_pattern,
        trace=sys.stdout if trace else None,
        scale=scale,
        resume_timeout=resume_timeout,
    )
    if autostart and load_resumable(data_dir) is None:
        root.iconify()  # at every login: ready in the taskbar, not in the way
        app.trace("minimized")
    root.mainloop()
    return 0
