"""Xvfb helpers for tests that need a real X server (``@pytest.mark.x11``).

``xvfb()`` starts a private virtual screen and yields its ``DISPLAY`` string; ``draw_pattern()``
shows known pixels on it; ``TkProbe`` is a real X window that reports the clicks and keys it
receives. All drawing goes through a small Tk program run by this interpreter (the venv's CPython
ships Tk 8.6), so nothing beyond ``xvfb`` and ``xdotool`` is needed from Debian:
``apt-get install xvfb xdotool x11-utils``.

Why Tk: a top-level window with ``overrideredirect`` is placed exactly where asked on a server
without a window manager, and a ``PhotoImage`` on Xvfb's 24-bit TrueColor visual puts every pixel
of a PNG on screen unchanged, so a test can compare captured pixels exactly.
"""

from __future__ import annotations

import ast
import contextlib
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = [
    "MISSING_TOOLS",
    "TkProbe",
    "draw_pattern",
    "held_input",
    "missing_x11_tools",
    "require_xvfb",
    "two_kind_picture",
    "xdotool",
    "xvfb",
]

_START_TIMEOUT = 10.0


MISSING_TOOLS = (
    "X11 tests need Xvfb and xdotool on PATH, and they do not skip: a green run without them "
    "would hide that screen sharing and remote control were never tested. Install them with "
    "`apt-get update && apt-get install -y xvfb xdotool x11-utils`, or deselect these tests "
    "explicitly with `-m 'not x11'`."
)


def missing_x11_tools() -> list[str]:
    """Which of Xvfb and xdotool are not on PATH (for code outside a test, e.g. the benchmark)."""
    return [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]


def require_xvfb() -> None:
    """Fail the current test, with install instructions, unless Xvfb and xdotool are installed."""
    if missing := missing_x11_tools():
        import pytest

        pytest.fail(f"{', '.join(missing)} not found. {MISSING_TOOLS}", pytrace=False)


def xdotool(display: str, *args: str, timeout: float = 10.0) -> str:
    """Run ``xdotool`` against ``display`` and return its stdout."""
    env = {**os.environ, "DISPLAY": display}
    done = subprocess.run(
        ["xdotool", *args], env=env, capture_output=True, text=True, timeout=timeout, check=True
    )
    return done.stdout


def search_windows(display: str, *args: str) -> list[str]:
    """``xdotool search *args`` → window IDs; none found (xdotool's exit 1) is an empty list."""
    env = {**os.environ, "DISPLAY": display}
    done = subprocess.run(
        ["xdotool", "search", *args], env=env, capture_output=True, text=True, timeout=10, check=False
    )
    if done.returncode not in (0, 1):
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done.stdout.split()


def _accepts_connections(display: str) -> bool:
    env = {**os.environ, "DISPLAY": display}
    try:
        done = subprocess.run(
            ["xdotool", "getdisplaygeometry"], env=env, capture_output=True, timeout=5, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


@contextlib.contextmanager
def xvfb(width: int = 1280, height: int = 800, *, depth: int = 24) -> Iterator[str]:
    """Run ``Xvfb :N -screen 0 WxHxD -nolisten tcp`` on a free display and yield ``":N"``.

    The display number comes from Xvfb's own ``-displayfd``: the server takes the first number
    whose ``/tmp/.X11-unix/XN`` socket and ``/tmp/.XN-lock`` file are free, atomically, so tests
    running in parallel (or another engineer's Xvfb) never collide, which probing the lock files
    from here could not promise. The number is written only once the server listens; we still
    wait until a client round trip succeeds before yielding.
    """
    require_xvfb()
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            f"{width}x{height}x{depth}",
            "-nolisten",
            "tcp",
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        number = _read_display_number(read_fd, proc)
        display = f":{number}"
        deadline = time.monotonic() + _START_TIMEOUT
        while not _accepts_connections(display):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Xvfb on {display} does not accept connections")
            time.sleep(0.05)
        yield display
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read_display_number(fd: int, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + _START_TIMEOUT
    buf = b""
    os.set_blocking(fd, False)
    while not buf.endswith(b"\n"):
        try:
            chunk = os.read(fd, 16)
        except BlockingIOError:
            chunk = None
        if chunk:
            buf += chunk
            continue
        if chunk == b"" or proc.poll() is not None:
            raise RuntimeError("Xvfb exited before reporting its display number")
        if time.monotonic() > deadline:
            raise RuntimeError("Xvfb did not report a display number in time")
        time.sleep(0.02)
    return int(buf.strip())


# The Tk program behind draw_pattern() and TkProbe. It speaks a line protocol: it prints "ready"
# once its window is drawn and the X server has processed every request (a round trip), and
# "click X Y" / "key NAME" for events; on the "get" command it prints the entry text as repr().
_TK_PROGRAM = r"""
import queue, sys, threading, tkinter as tk
mode, x, y, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
root = tk.Tk()
root.overrideredirect(True)
root.geometry(f"{w}x{h}+{x}+{y}")
root.configure(borderwidth=0, highlightthickness=0)
out = sys.stdout
def say(line):
    out.write(line + "\n"); out.flush()
if mode == "image":
    img = tk.PhotoImage(file=sys.argv[6])
    label = tk.Label(root, image=img, borderwidth=0, highlightthickness=0, padx=0, pady=0)
    label.place(x=0, y=0, width=w, height=h)
else:
    entry = tk.Entry(root)
    entry.place(x=0, y=0, width=w, height=30)
    canvas = tk.Canvas(root, background="white", highlightthickness=0)
    canvas.place(x=0, y=30, width=w, height=h - 30)
    def on_click(ev):
        say(f"click {ev.num} {ev.x_root} {ev.y_root}")
        entry.focus_force()
    canvas.bind("<ButtonPress>", on_click)
    entry.bind("<KeyPress>", lambda ev: say(f"key {ev.keysym}"))
    if mode == "recorder":
        # Every pointer event with root coordinates and the button/modifier state, in order.
        canvas.bind("<ButtonRelease>", lambda ev: say(f"release {ev.num} {ev.x_root} {ev.y_root}"))
        canvas.bind("<Double-Button-1>", lambda ev: say(f"double 1 {ev.x_root} {ev.y_root}"))
        canvas.bind("<B1-Motion>", lambda ev: say(f"drag {ev.x_root} {ev.y_root}"))
        entry.bind("<KeyPress>", lambda ev: say(f"key {ev.keysym} {ev.state}"))
commands = queue.Queue()
def read_stdin():
    for line in sys.stdin:
        commands.put(line.strip())
    commands.put("quit")
threading.Thread(target=read_stdin, daemon=True).start()
def poll():
    while not commands.empty():
        cmd = commands.get()
        if cmd == "quit":
            root.destroy(); return
        if cmd == "get" and mode in ("probe", "recorder"):
            say("text " + repr(entry.get()))
        if cmd == "focus" and mode in ("probe", "recorder"):
            entry.focus_force(); root.update(); root.winfo_pointerxy(); say("focused")
    root.after(20, poll)
def ready():
    root.update()
    if mode in ("probe", "recorder"):
        entry.focus_force(); root.update()
    root.winfo_pointerxy()  # a round trip: the server has drawn everything we sent
    say("ready")
    poll()
root.after(50, ready)
root.mainloop()
"""


class _TkWindow:
    """A running Tk helper process; closes its window on ``close()`` or at the end of ``with``."""

    def __init__(self, display: str, mode: str, x: int, y: int, w: int, h: int, *extra: str) -> None:
        env = {**os.environ, "DISPLAY": display}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _TK_PROGRAM, mode, str(x), str(y), str(w), str(h), *extra],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for("ready", timeout=15.0)

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line.rstrip("\n"))

    def send(self, command: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()

    def wait_for(self, prefix: str, *, timeout: float = 5.0) -> str:
        """Return the next output line starting with ``prefix``, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                err = ""
                if self._proc.poll() is not None and self._proc.stderr is not None:
                    err = self._proc.stderr.read()
                raise TimeoutError(f"Tk helper said no {prefix!r} in {timeout} s {err}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line.startswith(prefix):
                return line

    def lines(self) -> list[str]:
        """Every output line received so far and not yet consumed."""
        got: list[str] = []
        while True:
            try:
                got.append(self._lines.get_nowait())
            except queue.Empty:
                return got

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.send("quit")
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Pattern(_TkWindow):
    """Known pixels on screen; see :func:`draw_pattern`."""


def two_kind_picture(w: int, h: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """RGB picture: text-like left half (dark strokes on white), photo-like right half (gradient
    with noise, so JPEG is chosen there and a tile of it does not compress to nothing)."""
    rng = np.random.default_rng(seed)
    rgb = np.full((h, w, 3), 250, dtype=np.uint8)
    for row in range(4, h - 12, 14):
        for col in range(4, w // 2 - 8, 8):
            rgb[row : row + 9, col : col + 2] = (20, 20, 40)
            rgb[row + 4, col : col + 5] = (20, 20, 40)
    yy, xx = np.mgrid[0:h, w // 2 : w]
    photo = np.stack([xx * 255 // w, yy * 255 // h, (xx + 2 * yy) % 256], axis=-1)
    rgb[:, w // 2 :] = np.clip(photo + rng.integers(-2, 3, photo.shape), 0, 255).astype(np.uint8)
    return rgb


def draw_pattern(display: str, image: Image.Image, *, x: int = 0, y: int = 0) -> Pattern:
    """Show ``image`` (any Pillow image, shown as RGB) with its top-left corner at ``(x, y)``.

    Returns once the pixels are on the server (a later screenshot sees them). Windows drawn later
    lie on top, so a test changes part of the screen by drawing a small pattern over it. Close the
    returned object (or use it in ``with``) to remove the window.
    """
    rgb = image.convert("RGB")
    with tempfile.TemporaryDirectory(prefix="x11-pattern-") as tmp:
        path = Path(tmp) / "pattern.png"
        rgb.save(path, format="PNG")
        # Tk reads the file before it says "ready", so the directory may go afterwards.
        return Pattern(display, "image", x, y, rgb.width, rgb.height, str(path))


class TkProbe(_TkWindow):
    """A window with a text entry (focused) above a canvas that reports clicks.

    ``text()`` returns what was typed into the entry, as the X server delivered the key events;
    ``wait_for("click")`` returns ``"click BUTTON X Y"`` with root coordinates. With
    ``record=True`` it also reports ``"release BUTTON X Y"``, ``"double 1 X Y"``, ``"drag X Y"``
    (pointer motion with button 1 held) and ``"key KEYSYM STATE"`` (the X modifier mask).
    """

    def __init__(
        self, display: str, *, x: int = 0, y: int = 0, w: int = 400, h: int = 300, record: bool = False
    ) -> None:
        super().__init__(display, "recorder" if record else "probe", x, y, w, h)

    def focus(self) -> None:
        self.send("focus")
        self.wait_for("focused")

    def text(self) -> str:
        self.send("get")
        line = self.wait_for("text ")
        value = line.removeprefix("text ")
        # The helper printed repr() of a str; literal_eval is safe for that.
        result = ast.literal_eval(value)
        assert isinstance(result, str)
        return result


def held_input(display: str) -> tuple[int, list[int]]:
    """What the X server holds down right now: the pointer's button and modifier mask (0x100 =
    button 1 ... 0x1000 = button 5; 0x4 = Control) and the keycodes pressed, as ``xinput
    query-state`` would show them."""
    import Xlib.display  # type: ignore[import-untyped]

    d = Xlib.display.Display(display)
    try:
        mask = int(d.screen().root.query_pointer().mask)
        keymap = d.query_keymap()
        keys = [byte * 8 + bit for byte, bits in enumerate(keymap) for bit in range(8) if bits & (1 << bit)]
        return mask, keys
    finally:
        d.close()
