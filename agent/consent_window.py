"""The consent question as a window (Tk), for a desktop without a terminal, or beside it.

The same question as the terminal's (第31条1項④: the subscriber accepts the operator's remote
operation; 別紙5: item by item): one checkbox per scope, all unticked (default deny), a countdown,
"allow selected" and "deny all". It lives in its own module so the desktop app can reuse it.

Remote input cannot operate it: while it is open (and for a grace time after it closes) the
session applies no remote input at all (:mod:`agent.input.consent_guard`), and its rectangle is
reported through ``on_shown`` so a pointer event inside it is refused as well. The operator's
name is shown through :func:`protocol.text.safe_text` (DESIGN §2: nothing from elsewhere raw).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final

from protocol.messages import ConsentRequest
from protocol.text import safe_text

from .consent import INVENTORY_PREFIX, SYSTEM_RESTART, scope_label
from .errors import AgentError, AgentErrorCode
from .i18n import is_japanese

__all__ = [
    "DialogUnavailable",
    "WidgetRects",
    "ask_consent_dialog",
    "gui_available",
    "tk_consent_dialog",
]


class DialogUnavailable(AgentError):
    """No window can be shown here (no tkinter, no display); use the terminal prompt instead."""

    code = AgentErrorCode.DIALOG_UNAVAILABLE


def gui_available(env: Mapping[str, str] | None = None) -> bool:
    """Whether a consent window can probably be shown: Windows and macOS always, elsewhere with a display."""
    env = os.environ if env is None else env
    try:
        import tkinter  # noqa: F401
    except ImportError:
        return False
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


_DIALOG_TITLE: Final = ("リモートサポートの許可", "Remote support permission")
_POLL_MS: Final = 50
_WRAP: Final = 520

WidgetRects = Mapping[str, tuple[int, int, int, int]]
"""Widget name ("allow", "deny", a scope, or "window" for the whole window) → ``(x, y, width,
height)`` in root-window pixels."""


def tk_consent_dialog(
    request: ConsentRequest,
    lang: str,
    timeout: float,
    *,
    display: str | None = None,
    cancel: threading.Event | None = None,
    on_shown: Callable[[WidgetRects], None] | None = None,
) -> set[str] | None:
    """Ask ``request`` in a window: one checkbox per scope, all unchecked; blocks until answered.

    Returns the checked scopes on "Allow selected", an empty set on "Deny all", Escape or closing
    the window, and None when ``timeout`` seconds pass or ``cancel`` is set (= deny, DESIGN §5).
    Run it in a worker thread (:func:`ask_consent_dialog` does): Tk lives in the calling thread,
    and every Tk object is released in that thread before returning (Tcl aborts the process if an
    interpreter is freed by another thread). ``display`` names the X display (default ``$DISPLAY``).
    ``on_shown`` receives, once the window is on screen, each widget's rectangle
    (:data:`WidgetRects`), for accessibility tools and tests.
    Raises :class:`DialogUnavailable` when no window can be opened.
    """
    try:
        import tkinter  # noqa: F401
    except ImportError:
        raise DialogUnavailable("tkinter is not available") from None
    try:
        dialog = _ConsentDialog(request, lang, timeout, display=display, cancel=cancel, on_shown=on_shown)
        try:
            return dialog.run()
        finally:
            dialog.close()
            del dialog
    finally:
        gc.collect()  # free any Tk object caught in a reference cycle here, in this thread


class _ConsentDialog:
    """The window of :func:`tk_consent_dialog`; methods, not closures, so nothing keeps Tk alive."""

    def __init__(
        self,
        request: ConsentRequest,
        lang: str,
        timeout: float,
        *,
        display: str | None,
        cancel: threading.Event | None,
        on_shown: Callable[[WidgetRects], None] | None,
    ) -> None:
        import tkinter as tk

        try:
            self.root = tk.Tk(screenName=display)
        except tk.TclError as exc:
            raise DialogUnavailable(f"cannot open a window: {exc}") from None
        self.ja = is_japanese(lang)
        self.deadline = time.monotonic() + timeout
        self.cancel = cancel
        self.on_shown = on_shown
        self.result: set[str] | None = None
        ja = self.ja
        scopes = tuple(dict.fromkeys(request.scopes))
        root = self.root
        root.title(_DIALOG_TITLE[0] if ja else _DIALOG_TITLE[1])
        root.resizable(False, False)
        with contextlib.suppress(tk.TclError):
            root.attributes("-topmost", True)
        frame = tk.Frame(root, padx=16, pady=12)
        frame.pack(fill="both", expand=True)
        operator = safe_text(request.operator, max_chars=80)
        header = (
            f"オペレータ「{operator}」が次の許可を求めています（第31条1項④）。"
            "許可する項目にチェックを入れてください。"
            if ja
            else f'Operator "{operator}" asks for your permission (Art. 31(1)(iv)). Tick what you allow.'
        )
        tk.Label(frame, text=header, justify="left", wraplength=_WRAP).pack(anchor="w", pady=(0, 8))
        self.variables: dict[str, tk.BooleanVar] = {}
        self.boxes: dict[str, tk.Checkbutton] = {}
        for scope in scopes:
            var = tk.BooleanVar(master=root, value=False)
            box = tk.Checkbutton(frame, text=scope_label(scope, lang), variable=var, anchor="w")
            box.pack(anchor="w")
            self.variables[scope] = var
            self.boxes[scope] = box
        seconds = f"{timeout:g}"
        notes = [
            f"チェックしない項目は許可されません。{seconds}秒以内に回答がない場合は、すべて拒否します。"
            if ja
            else f"Nothing unticked is allowed. No answer within {seconds} seconds means no to everything."
        ]
        if any(s.startswith(INVENTORY_PREFIX) for s in scopes):
            notes.append(
                "情報の取得を承諾しない場合であっても、本サービスの利用には何ら制限はありません（別紙5）。"
                if ja
                else "If you do not allow the information to be collected, "
                "the service is not limited in any way."
            )
        if SYSTEM_RESTART in scopes:
            notes.append(
                "再起動を許可すると、パソコンが一度止まり、保存していない作業は消えます。"
                if ja
                else "Allowing a restart turns your computer off and on: unsaved work is lost."
            )
        tk.Label(frame, text="\n".join(notes), justify="left", wraplength=_WRAP).pack(anchor="w", pady=(8, 4))
        self.countdown = tk.Label(frame, text="", justify="left")
        self.countdown.pack(anchor="w")
        buttons = tk.Frame(frame)
        buttons.pack(anchor="e", pady=(8, 0))
        self.allow = tk.Button(buttons, text="許可" if ja else "Allow selected", command=self._allow)
        self.deny = tk.Button(buttons, text="すべて拒否" if ja else "Deny all", command=self._deny)
        self.deny.pack(side="right", padx=(8, 0))
        self.allow.pack(side="right")
        root.protocol("WM_DELETE_WINDOW", self._deny)
        root.bind("<Escape>", self._escape)

    def run(self) -> set[str] | None:
        self._tick()
        self.root.after(_POLL_MS, self._report_shown)
        self.root.mainloop()
        return self.result

    def close(self) -> None:
        import tkinter as tk

        with contextlib.suppress(tk.TclError):
            self.root.destroy()
        self.variables.clear()
        self.boxes.clear()

    def _finish(self, value: set[str] | None) -> None:
        self.result = value
        self.root.quit()

    def _allow(self) -> None:
        self._finish({scope for scope, var in self.variables.items() if var.get()})

    def _deny(self) -> None:
        self._finish(set())

    def _escape(self, _event: object) -> None:
        self._deny()

    def _tick(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0 or (self.cancel is not None and self.cancel.is_set()):
            self._finish(None)
            return
        shown = math.ceil(left)
        self.countdown.configure(text=f"残り {shown} 秒" if self.ja else f"{shown} s left")
        self.root.after(_POLL_MS, self._tick)

    def _report_shown(self) -> None:
        if self.on_shown is None:
            return
        if not self.root.winfo_viewable():
            self.root.after(_POLL_MS, self._report_shown)
            return
        self.root.update_idletasks()
        widgets = {"allow": self.allow, "deny": self.deny, **self.boxes}
        rects = {
            name: (w.winfo_rootx(), w.winfo_rooty(), w.winfo_width(), w.winfo_height())
            for name, w in widgets.items()
        }
        root = self.root
        rects["window"] = (root.winfo_rootx(), root.winfo_rooty(), root.winfo_width(), root.winfo_height())
        self.on_shown(rects)


CLOSE_WAIT: Final = 2.0
"""Seconds a cancelled :func:`ask_consent_dialog` waits for its window to close (it polls its
``cancel`` flag every ``_POLL_MS``, 50 ms), so the window is gone when the question is void."""


async def ask_consent_dialog(
    request: ConsentRequest,
    *,
    lang: str,
    display: str | None = None,
    on_shown: Callable[[WidgetRects], None] | None = None,
) -> set[str] | None:
    """:func:`tk_consent_dialog` in a worker thread with ``request.timeout``; cancelling closes the window.

    ``on_shown`` is called from the worker thread with the widgets' rectangles (``"window"`` is
    the whole window) once it is on screen. When the question becomes void (the session ended,
    the answer came from the terminal) the caller cancels this coroutine: the window is told to
    close and, before the cancellation goes on, this waits up to :data:`CLOSE_WAIT` for it to be
    gone, so no window outlives its question and nothing waits for it until its timeout.
    """
    cancel = threading.Event()
    worker = asyncio.get_running_loop().run_in_executor(
        None,
        functools.partial(
            tk_consent_dialog,
            request,
            lang,
            request.timeout,
            display=display,
            cancel=cancel,
            on_shown=on_shown,
        ),
    )
    worker.add_done_callback(lambda done: done.cancelled() or done.exception())  # never "not retrieved"
    try:
        return await asyncio.shield(worker)
    except asyncio.CancelledError:
        cancel.set()
        await asyncio.wait({worker}, timeout=CLOSE_WAIT)
        raise
    finally:
        cancel.set()
