"""``python -m helpdesk``: the operator's scriptable command line.

``login`` stores the session token (0600) in a state file; every other command opens a
connection, authenticates with it, does one thing and leaves. A claimed session waits for its
operator to come back (``watch`` or ``session``) within the broker's grace period (30 s by
default), then the broker ends it (``operator_lost``): ``session SESSION`` holds it
interactively (view, chat, input, end) from one terminal.

Exit codes: 0 done; 1 a check failed (``audit --verify``); 2 the broker or this program refused
(``error [code]: …`` on stderr, e.g. ``invalid_field`` for an unknown key or scope); 3 the broker
could not be reached or did not answer in time (``error [unreachable]`` / ``error [timeout]``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import platformdirs

from certs import write_secret_file
from protocol.text import safe_text

from .client import HelpdeskClient, HelpdeskError
from .keys import valid_key

APP_NAME = "isp-remote-support-helpdesk"


def default_state_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "session.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpdesk", description="Operator client")
    parser.add_argument(
        "--state", type=Path, default=None, help=f"token file (default {default_state_file()})"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    login = sub.add_parser("login", help="log in with password and TOTP; stores the session token")
    login.add_argument("--broker", required=True, help="wss://host:port")
    login.add_argument("--ca", type=Path, required=True, help="the broker's CA certificate (PEM)")
    login.add_argument("--name", required=True)
    login.add_argument("--totp", required=True, help="the 6-digit code of the authenticator app")
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (and, when a change is required, the new one) from standard input",
    )

    sub.add_parser("logout", help="end the stored session")
    sub.add_parser("queue", help="waiting support requests")
    claim = sub.add_parser("claim", help="take a request by the code the subscriber read out")
    claim.add_argument("code")
    claim.add_argument(
        "--scope", action="append", default=None, help="screen:view (default), input:control, …"
    )
    watch = sub.add_parser("watch", help="attach to a session and save the screen updates")
    watch.add_argument("session_id")
    watch.add_argument("--out", type=Path, required=True)
    watch.add_argument("--updates", type=int, default=0, help="stop after this many updates (0 = no limit)")
    watch.add_argument(
        "--seconds", type=float, default=0, help="stop after this long (0 = until the session ends)"
    )
    send = sub.add_parser("send-input", help="one mouse or keyboard event (needs input:control)")
    send.add_argument("session_id")
    what = send.add_mutually_exclusive_group(required=True)
    what.add_argument("--move", nargs=2, type=int, metavar=("X", "Y"))
    what.add_argument("--click", nargs=2, type=int, metavar=("X", "Y"))
    what.add_argument("--key", help="a key name: Enter, a, F5 …")
    what.add_argument("--text")
    send.add_argument("--button", choices=("left", "right", "middle"), default="left")
    request = sub.add_parser("request", help="ask the subscriber for more scopes")
    request.add_argument("session_id")
    request.add_argument("scopes", nargs="+")
    chat = sub.add_parser("chat", help="send a chat line to the subscriber")
    chat.add_argument("session_id")
    chat.add_argument("text")
    end = sub.add_parser("end", help="end a session")
    end.add_argument("session_id")
    end.add_argument("--note", default="", help="wrap-up note, kept with the session's audit summary")
    session = sub.add_parser(
        "session", help="hold a session interactively: its state and chat, chat, /click, /key, /end …"
    )
    session.add_argument("session_id")
    session.add_argument("--out", type=Path, default=None, help="save the screen as DIR/screen.png")
    sub.add_parser("sessions", help="live sessions (supervisors)")
    audit = sub.add_parser("audit", help="audit log (supervisors)")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--verify", action="store_true")
    return parser


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise HelpdeskError("auth_required", "not logged in: run `python -m helpdesk login` first") from None
    return state


def main(argv: Sequence[str] | None = None, *, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    state_path: Path = args.state or default_state_file()
    try:
        return asyncio.run(_main(args, state_path, stdin, out))
    except HelpdeskError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    except TimeoutError:
        print("error [timeout]: the broker did not answer in time", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"error [unreachable]: {exc}", file=sys.stderr)
        return 3


async def _main(args: argparse.Namespace, state_path: Path, stdin: TextIO, out: TextIO) -> int:
    if args.command == "login":
        return await _login(args, state_path, stdin, out)
    _check_args(args)
    state = _load_state(state_path)
    client = HelpdeskClient(state["broker"], cafile=Path(state["ca"]))
    async with client:
        await client.auth(state["token"])
        if args.command == "session":
            from .interactive import run_session

            return await run_session(client, args.session_id, out_dir=args.out, stdin=stdin, out=out)
        return await _command(client, args, state_path, out)


def _check_args(args: argparse.Namespace) -> None:
    """Refuse what the agent or the broker would drop, before connecting (exit 2)."""
    from protocol.scopes import ALL_SCOPES

    if args.command == "send-input" and args.key is not None and not valid_key(args.key):
        raise HelpdeskError(
            "invalid_field", f"unknown key {args.key!r} (names like Enter, Tab, F5, ctrl, or one character)"
        )
    scopes = (
        args.scopes if args.command == "request" else (args.scope or []) if args.command == "claim" else []
    )
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown:
        raise HelpdeskError(
            "invalid_field", f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}"
        )


async def _login(args: argparse.Namespace, state_path: Path, stdin: TextIO, out: TextIO) -> int:
    def secret(prompt: str) -> str:
        if args.password_stdin:
            return stdin.readline().rstrip("\n")
        return getpass.getpass(prompt)

    client = HelpdeskClient(args.broker, cafile=args.ca)
    async with client:
        password = secret("password: ")
        info = await client.login(args.name, password, args.totp)
        if info.password_change_required:
            new = secret("the initial password must be changed; new password: ")
            await client.change_password(password, new)
            print("password changed", file=out)
    state = {
        "broker": args.broker,
        "ca": str(args.ca.resolve()),
        "token": info.token,
        "expires_at": info.expires_at,
        "name": info.name,
        "role": info.role,
    }
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.unlink(missing_ok=True)
    write_secret_file(state_path, json.dumps(state).encode("utf-8"))
    print(f"logged in as {info.display_name} ({info.role}) until {time.ctime(info.expires_at)}", file=out)
    return 0


async def _command(client: HelpdeskClient, args: argparse.Namespace, state_path: Path, out: TextIO) -> int:
    from protocol.messages import Chat, Error, SessionState

    if args.command == "logout":
        await client.logout()
        state_path.unlink(missing_ok=True)
        print("logged out", file=out)
    elif args.command == "queue":
        queue = await client.queue()
        if queue.requests:
            print(f"{'SESSION':<24} {'CONTRACT':<12} {'MACHINE':<20} {'WAITING':>8}  CODE EXPIRES", file=out)
        for entry in queue.requests:
            waiting = int(time.time() - entry.created_at)
            expires = time.strftime("%H:%M:%S", time.localtime(entry.expires_at))
            print(
                f"{entry.session_id:<24} {safe_text(entry.contract_id):<12} "
                f"{safe_text(entry.machine_name):<20} {waiting:>7}s  {expires}",
                file=out,
            )
        if not queue.requests:
            print("no waiting requests", file=out)
    elif args.command == "claim":
        claimed = await client.claim(code=args.code, scopes=args.scope or ("screen:view",))
        print(claimed.session_id, file=out)
    elif args.command == "watch":
        return await _watch(client, args, out)
    elif args.command == "send-input":
        if args.move:
            await client.send_input(args.session_id, "move", x=args.move[0], y=args.move[1])
        elif args.click:
            x, y = args.click
            await client.send_input(args.session_id, "button", x=x, y=y, button=args.button, action="click")
        elif args.key:
            await client.send_input(args.session_id, "key", key=args.key, action="click")
        else:
            await client.send_input(args.session_id, "text", text=args.text)
        # Input has no answer when it is applied; a refusal comes back as an error.
        await _no_error_within(client, 1.0)
        print("sent", file=out)
    elif args.command == "request":
        await client.request_scopes(args.session_id, args.scopes)
        await _no_error_within(client, 1.0)
        print("asked the subscriber", file=out)
    elif args.command == "chat":
        # Watching makes this connection a viewer, so the broker's relay of the line to every
        # viewer (us included) confirms it went out to the subscriber's session.
        await _watched(client, args.session_id)
        await client.chat(args.session_id, args.text)
        while True:
            echoed = await client.next_event(Chat, Error, timeout=10.0)
            if isinstance(echoed, Error):
                raise HelpdeskError(echoed.code, echoed.message)
            if isinstance(echoed, Chat) and echoed.session_id == args.session_id and echoed.text == args.text:
                break
        print("sent", file=out)
    elif args.command == "end":
        await _watched(client, args.session_id)
        await client.end(args.session_id, args.note[:255])
        state = await client.wait_state(args.session_id, lambda s: s.phase == "ended", timeout=10)
        assert isinstance(state, SessionState)
        print(f"ended ({state.reason})", file=out)
    elif args.command == "sessions":
        for s in (await client.sessions()).sessions:
            scopes = ",".join(f"{k}={v}" for k, v in s.scopes.items())
            print(
                f"{s.session_id} {s.phase} {s.contract_id} {s.machine_name} {s.operator} {scopes}", file=out
            )
    elif args.command == "audit":
        if args.verify:
            report = await client.audit_verify()
            print(f"audit chain {'OK' if report.ok else 'BROKEN'} ({report.checked} entries)", file=out)
            for problem in report.problems:
                print(f"  {problem}", file=out)
            return 0 if report.ok else 1
        for e in (await client.audit(limit=args.limit)).entries:
            print(
                f"{e.seq:>6} {time.ctime(e.at)} {e.actor:<16} {e.action:<20} {e.subject} {e.details}",
                file=out,
            )
    return 0


async def _watched(client: HelpdeskClient, session_id: str) -> None:
    """Attach as a viewer; raises the broker's refusal (an ended or unknown session)."""
    from protocol.messages import Error, SessionState

    await client.watch(session_id)
    while True:
        event = await client.next_event(SessionState, Error, timeout=10.0)
        if isinstance(event, Error):
            raise HelpdeskError(event.code, event.message)
        if isinstance(event, SessionState) and event.session_id == session_id:
            return


async def _no_error_within(client: HelpdeskClient, seconds: float) -> None:
    """Fire-and-forget messages have no answer; a refusal comes back as an error (raised here)."""
    from protocol.messages import Error

    try:
        event = await client.next_event(Error, timeout=seconds)
    except TimeoutError:
        return
    assert isinstance(event, Error)
    raise HelpdeskError(event.code, event.message)


async def _watch(client: HelpdeskClient, args: argparse.Namespace, out: TextIO) -> int:
    from protocol.errors import ProtocolError
    from protocol.messages import Chat, Error, SessionState
    from protocol.text import safe_text

    from .canvas import Canvas

    args.out.mkdir(parents=True, exist_ok=True)
    os.chmod(args.out, 0o700)  # screen content is personal data (第30条)
    await client.watch(args.session_id)
    canvas = Canvas()
    deadline = time.monotonic() + args.seconds if args.seconds else None
    ended = False
    seen_state = False
    while not ended and (not args.updates or canvas.updates < args.updates):
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if timeout == 0.0:
            break
        screen = asyncio.create_task(client.screen.get())
        event = asyncio.create_task(client.events.get())
        done, pending = await asyncio.wait(
            {screen, event}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        if screen in done:
            frame = screen.result()
            (args.out / f"{canvas.updates:06d}.bin").write_bytes(frame)
            try:
                canvas.apply(frame)
            except (ProtocolError, ValueError) as exc:  # a hostile or broken agent: report, go on
                print(f"bad screen update skipped: {safe_text(str(exc))}", file=out, flush=True)
        if event in done:
            message = event.result()
            if isinstance(message, SessionState) and message.session_id == args.session_id:
                seen_state = True
                print(f"state: {message.phase} {dict(message.scopes)}", file=out, flush=True)
                ended = message.phase == "ended"
            elif isinstance(message, Error) and canvas.updates == 0 and not seen_state:
                raise HelpdeskError(message.code, message.message)  # no such session, or ended
            elif isinstance(message, Chat) and message.session_id == args.session_id:
                sender = safe_text(message.sender or "-")
                print(f"chat {sender}: {safe_text(message.text)}", file=out, flush=True)
    if canvas.pixels is not None:
        canvas.save_png(args.out / "screen.png")
    print(f"{canvas.updates} updates ({canvas.keyframes} keyframes) saved in {args.out}", file=out)
    return 0
