"""``python -m helpdesk session SESSION``: one interactive command that holds a session.

A session claimed from the command line needs a viewer attached, or the broker ends it when its
grace period (``serve --grace``, 30 s) runs out after the last viewer left (``operator_lost``).
This command is that viewer, and a whole operator's terminal at once: it shows the session's
state and the subscriber's chat as they come, saves the screen (``--out``), and reads lines:

    any text            chat to the subscriber
    /click X Y [right]  click at a shared-screen pixel     /move X Y
    /key NAME           press and release a key             /text TEXT   type text
    /request SCOPE…     ask for more consent                /end [NOTE]  end (the note is audited)
    /invite NAME        let colleague NAME watch (the subscriber is asked for that person)
    /transfer NAME      hand the session to colleague NAME (after the subscriber's yes; no control)
    /restart            restart the PC (after the subscriber allowed system:restart)
    /quit               leave (the session ends after the grace period unless someone watches)

Text from elsewhere is shown through ``protocol.text.safe_text`` (no terminal escapes).
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import TextIO

from protocol.errors import ProtocolError
from protocol.messages import Chat, Error, Invitation, SessionState
from protocol.scopes import ALL_SCOPES
from protocol.text import safe_text

from .client import HelpdeskClient, HelpdeskError
from .keys import valid_key

HELP = __doc__.split("reads lines:\n\n", 1)[1].split("\n\nText from", 1)[0] if __doc__ else ""


async def _lines(stdin: TextIO) -> asyncio.Queue[str | None]:
    """Lines of ``stdin`` from a reader thread (None at end of input)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    # A daemon thread, not the loop's executor: asyncio.run() would wait for a blocked read of
    # the terminal before exiting after the session ended.
    threading.Thread(target=read, name="session-stdin", daemon=True).start()
    return queue


def describe(state: SessionState) -> str:
    scopes = ", ".join(f"{scope}={status}" for scope, status in sorted(state.scopes.items())) or "-"
    line = f"state: {state.phase} [{scopes}]"
    if state.restart_until is not None and state.phase != "ended":
        line += " (restarting: the PC is restarting, the session waits for it)"
    if state.phase == "ended":
        line += f" ended by {safe_text(state.ended_by or '-')}: {safe_text(state.reason or '-')}"
    return line


async def run_session(
    client: HelpdeskClient, session_id: str, *, out_dir: Path | None, stdin: TextIO, out: TextIO
) -> int:
    """Hold the session until it ends, ``/end`` or ``/quit``; returns the exit code."""
    from .canvas import Canvas

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(out_dir, 0o700)  # screen content is personal data (第30条)
    canvas = Canvas()
    await client.watch(session_id)
    print(f"holding session {session_id}; type /help for commands", file=out, flush=True)
    lines = await _lines(stdin)
    seq = 0
    while True:
        line_task = asyncio.create_task(lines.get())
        event_task = asyncio.create_task(client.events.get())
        screen_task = asyncio.create_task(client.screen.get())
        done, pending = await asyncio.wait(
            {line_task, event_task, screen_task}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        if screen_task in done:
            canvas.apply(screen_task.result())
            seq += 1
            if out_dir is not None and canvas.pixels is not None and seq % 10 == 1:
                canvas.save_png(out_dir / "screen.png")
        if event_task in done:
            message = event_task.result()
            if isinstance(message, SessionState) and message.session_id == session_id:
                print(describe(message), file=out, flush=True)
                if message.phase == "ended":
                    break
            elif isinstance(message, Chat) and message.session_id == session_id:
                print(
                    f"chat {safe_text(message.sender or '-')}: {safe_text(message.text)}",
                    file=out,
                    flush=True,
                )
            elif isinstance(message, Invitation) and message.session_id == session_id:
                print(f"{message.kind} {message.colleague}: {message.status}", file=out, flush=True)
                if (
                    message.kind == "transfer"
                    and message.status == "allowed"
                    and client.login_info is not None
                    and message.by == client.login_info.name
                ):
                    print("the session was handed over; you are no longer attached", file=out, flush=True)
                    break
            elif isinstance(message, Error):
                print(f"error [{message.code}]: {safe_text(message.message)}", file=out, flush=True)
        if line_task in done:
            line = line_task.result()
            if line is None or line.strip() == "/quit":
                print(
                    "left the session (it ends after the broker's grace period unless someone watches)",
                    file=out,
                )
                break
            try:
                if await _command(client, session_id, line, out):
                    continue
            except (HelpdeskError, ProtocolError) as exc:  # ProtocolError: a message that cannot be built
                print(f"error [{exc.code}]: {safe_text(exc.message)}", file=out, flush=True)
    if out_dir is not None and canvas.pixels is not None:
        canvas.save_png(out_dir / "screen.png")
    return 0


async def _command(client: HelpdeskClient, session_id: str, line: str, out: TextIO) -> bool:
    """Apply one typed line; raises HelpdeskError for a line that cannot be sent."""
    if not line.strip():
        return True
    if not line.startswith("/"):
        await client.chat(session_id, line)
        return True
    word, _, rest = line[1:].partition(" ")
    args = rest.split()
    if word == "help":
        print(HELP, file=out, flush=True)
    elif word in ("click", "move"):
        if len(args) not in (2, 3) or not all(a.isdigit() for a in args[:2]):
            raise HelpdeskError(
                "invalid_field", f"usage: /{word} X Y" + (" [left|right|middle]" if word == "click" else "")
            )
        x, y = int(args[0]), int(args[1])
        if word == "move":
            await client.send_input(session_id, "move", x=x, y=y)
        else:
            button = args[2] if len(args) == 3 else "left"
            if button not in ("left", "right", "middle"):
                raise HelpdeskError("invalid_field", "button must be left, right or middle")
            await client.send_input(session_id, "button", x=x, y=y, button=button, action="click")
    elif word == "key":
        if not rest or not valid_key(rest.strip()):
            raise HelpdeskError("invalid_field", f"unknown key {safe_text(rest.strip())!r}")
        await client.send_input(session_id, "key", key=rest.strip(), action="click")
    elif word == "text":
        if not rest:
            raise HelpdeskError("invalid_field", "usage: /text TEXT")
        await client.send_input(session_id, "text", text=rest)
    elif word == "request":
        unknown = [s for s in args if s not in ALL_SCOPES]
        if not args or unknown:
            raise HelpdeskError(
                "invalid_field",
                f"unknown scope(s): {', '.join(unknown) or '-'}; known: {', '.join(ALL_SCOPES)}",
            )
        await client.request_scopes(session_id, args)
    elif word in ("invite", "transfer"):
        if len(args) != 1:
            raise HelpdeskError("invalid_field", f"usage: /{word} NAME")
        ask = client.invite if word == "invite" else client.transfer
        answer = await ask(session_id, args[0])
        print(f"{answer.kind} {answer.colleague}: {answer.status}", file=out, flush=True)
    elif word == "restart":
        await client.restart(session_id)
    elif word == "end":
        await client.end(session_id, rest.strip()[:255])
    else:
        raise HelpdeskError("invalid_field", f"unknown command /{safe_text(word)} (try /help)")
    return True
