"""The "being watched" indicator: a small always-on-top window while the screen is seen or controlled.

DESIGN §2: "Every person who can see the screen is known to the subscriber at every moment", and
the subscriber can stop at any moment (第31条1項④). Whenever the agent's own consent record
grants ``screen:view`` or ``input:control``, this window shows, in large Japanese text (English
fallback): that the screen is being watched (or the PC controlled), who is watching (the broker's
``SessionState.viewers``, each name through :func:`protocol.text.safe_text`), what is granted,
the latest change in who is watching, and two buttons: "操作をやめてもらう" (withdraw control)
and "終了" (end the session).

It runs as its own process (``python -m agent.indicator``), so Tk has a thread and an interpreter
of its own and the agent's event loop never waits on it; the desktop app can start it the same
way. It speaks JSON lines: on stdin ``{"lang", "viewers": [{"name", "role", "read_only"}],
"granted": [scope, ...], "notice": text}`` (every field optional; an update) and ``{"quit": true}``;
on stdout ``{"event": "shown", "rect": [x, y, w, h], "buttons": {...}}``, ``{"event": "focus",
"focused": bool}``, ``{"event": "withdraw_control"}`` and ``{"event": "end"}``. The agent drops
remote pointer events inside the reported rectangle and remote keys while it has the focus
(:mod:`agent.input.consent_guard`), so only the subscriber's own clicks reach its buttons.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
from typing import Any, Final

from protocol.text import safe_text

from .consent import INPUT_CONTROL, SCREEN_VIEW, scope_label
from .i18n import is_japanese

__all__ = ["TITLE", "describe", "main"]

TITLE: Final = {"ja": "リモートサポート中 / Remote support in progress", "en": "Remote support in progress"}
"""Window title (the ASCII part lets ``xdotool search --name`` find it)."""

BIG_FONT: Final = ("IPAGothic", 20, "bold")
TEXT_FONT: Final = ("IPAGothic", 14)
BUTTON_FONT: Final = ("IPAGothic", 14, "bold")
MARGIN: Final = 16
"""Pixels between the window and the screen's top-right corner."""
_POLL_MS: Final = 50
MAX_VIEWERS_SHOWN: Final = 16


def describe(state: dict[str, Any]) -> dict[str, str]:
    """The indicator's texts for ``state`` (pure; also used by tests): headline, who, what, notice."""
    lang = str(state.get("lang") or "ja")
    ja = is_japanese(lang)
    granted = [str(s) for s in state.get("granted") or ()]
    if INPUT_CONTROL in granted:
        headline = "パソコンを操作されています" if ja else "Your PC is being controlled"
    elif SCREEN_VIEW in granted:
        headline = "画面を見られています" if ja else "Your screen is being watched"
    else:
        headline = "画面は共有していません" if ja else "Your screen is not shared"
    roles = {"operator": ("オペレータ", "operator"), "supervisor": ("スーパーバイザー", "supervisor")}
    people = []
    for viewer in list(state.get("viewers") or ())[:MAX_VIEWERS_SHOWN]:
        name = safe_text(str(viewer.get("name", "?")), max_chars=60)
        role = roles.get(str(viewer.get("role")), ("?", "?"))[0 if ja else 1]
        extra = ("・閲覧のみ" if ja else ", view only") if viewer.get("read_only") else ""
        people.append(f"{name}（{role}{extra}）" if ja else f"{name} ({role}{extra})")
    nobody = "（まだいません）" if ja else "(nobody yet)"
    # Only while screen:view is granted can anyone see the screen (DESIGN §2): otherwise (control
    # alone) the people are in the session, not watching.
    if SCREEN_VIEW in granted:
        label = "見ている人: " if ja else "Watching: "
    else:
        label = "参加している人: " if ja else "In the session: "
    who = label + (("、" if ja else ", ").join(people) or nobody)
    labels = [scope_label(s, lang) for s in (SCREEN_VIEW, INPUT_CONTROL) if s in granted]
    others = [s for s in granted if s not in (SCREEN_VIEW, INPUT_CONTROL)]
    if others:
        labels.append(f"情報の取得 {len(others)} 項目" if ja else f"{len(others)} inventory items")
    what = ("許可していること: " if ja else "Allowed: ") + (("、" if ja else ", ").join(labels) or "-")
    notice = safe_text(str(state.get("notice") or ""), max_chars=200)
    return {"headline": headline, "who": who, "what": what, "notice": notice}


class _Indicator:
    def __init__(self, commands: queue.Queue[dict[str, Any] | None]) -> None:
        import tkinter as tk

        self.commands = commands
        self.state: dict[str, Any] = {"lang": "ja", "viewers": [], "granted": []}
        self.root = tk.Tk()
        root = self.root
        root.title(TITLE["ja"])
        root.resizable(False, False)
        with contextlib.suppress(tk.TclError):
            root.attributes("-topmost", True)
        root.configure(background="#fff3c4", padx=14, pady=10)
        self.headline = tk.Label(root, font=BIG_FONT, background="#fff3c4", foreground="#8a1c00")
        self.who = tk.Label(root, font=TEXT_FONT, background="#fff3c4", justify="left", wraplength=620)
        self.what = tk.Label(root, font=TEXT_FONT, background="#fff3c4", justify="left", wraplength=620)
        self.notice = tk.Label(
            root, font=TEXT_FONT, background="#fff3c4", foreground="#003d99", justify="left", wraplength=620
        )
        for label in (self.headline, self.who, self.what, self.notice):
            label.pack(anchor="w")
        buttons = tk.Frame(root, background="#fff3c4")
        buttons.pack(anchor="e", pady=(10, 0))
        self.withdraw = tk.Button(buttons, font=BUTTON_FONT, command=self._withdraw)
        self.end = tk.Button(buttons, font=BUTTON_FONT, command=self._end)
        self.end.pack(side="right", padx=(10, 0))
        self.withdraw.pack(side="right")
        root.protocol("WM_DELETE_WINDOW", lambda: None)  # it goes away when sharing ends, not before
        root.bind("<FocusIn>", lambda _e: self._focus(True))
        root.bind("<FocusOut>", lambda _e: self._focus(False))
        root.bind("<Configure>", self._moved)
        self._last_rect: tuple[int, ...] | None = None
        self._target: tuple[int, int, int, int] | None = None
        root.withdraw()  # shown with the first state the agent sends, never empty

    @staticmethod
    def emit(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def _withdraw(self) -> None:
        self.emit({"event": "withdraw_control"})

    def _end(self) -> None:
        self.emit({"event": "end"})

    def _focus(self, focused: bool) -> None:
        self.emit({"event": "focus", "focused": focused})

    def _render(self) -> None:
        ja = is_japanese(str(self.state.get("lang") or "ja"))
        texts = describe(self.state)
        self.root.title(TITLE["ja" if ja else "en"])
        self.headline.configure(text=texts["headline"])
        self.who.configure(text=texts["who"])
        self.what.configure(text=texts["what"])
        self.notice.configure(text=texts["notice"])
        self.withdraw.configure(
            text="操作をやめてもらう" if ja else "Stop remote control",
            state="normal" if INPUT_CONTROL in (self.state.get("granted") or ()) else "disabled",
        )
        self.end.configure(text="終了" if ja else "End")
        self.root.update_idletasks()
        width, height = self.root.winfo_reqwidth(), self.root.winfo_reqheight()
        x = max(0, self.root.winfo_screenwidth() - width - MARGIN)
        self._target = (x, MARGIN, width, height)
        self.root.geometry(f"{width}x{height}+{x}+{MARGIN}")

    def _moved(self, _event: object = None) -> None:
        root = self.root
        if not root.winfo_viewable():
            return
        rect = (root.winfo_rootx(), root.winfo_rooty(), root.winfo_width(), root.winfo_height())
        if rect == self._last_rect:
            return
        self._last_rect = rect
        buttons = {
            name: [w.winfo_rootx(), w.winfo_rooty(), w.winfo_width(), w.winfo_height()]
            for name, w in (("withdraw", self.withdraw), ("end", self.end))
        }
        # "shown" once it stands where it was put; "moved" for every other place it really has (on
        # the way there, or where the subscriber dragged it by its title bar): the agent's input guard
        # protects wherever the window is now, not where it was first put (issue 11).
        kind = "shown" if rect == self._target else "moved"
        self.emit({"event": kind, "rect": list(rect), "buttons": buttons})

    def _poll(self) -> None:
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                break
            if command is None or command.get("quit"):
                self.root.quit()
                return
            self.state.update(
                {k: v for k, v in command.items() if k in ("lang", "viewers", "granted", "notice")}
            )
            self._render()
            self._last_rect = None
            if self.root.state() == "withdrawn":
                self.root.deiconify()
        self._moved()
        self.root.after(_POLL_MS, self._poll)

    def run(self) -> None:
        self.root.after(_POLL_MS, self._poll)
        self.root.mainloop()
        with contextlib.suppress(Exception):
            self.root.destroy()


def _read_commands(commands: queue.Queue[dict[str, Any] | None]) -> None:
    for line in sys.stdin:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            commands.put(value)
    commands.put(None)  # the agent went away: so does the indicator


def main() -> int:
    commands: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=256)
    threading.Thread(target=_read_commands, args=(commands,), daemon=True).start()
    try:
        indicator = _Indicator(commands)
    except Exception as exc:  # no display, no Tk: the agent tells the subscriber in the terminal
        _Indicator.emit({"event": "unavailable", "reason": type(exc).__name__})
        return 1
    indicator.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
