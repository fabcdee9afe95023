"""``python -m agent``: what the subscriber (or the helpdesk on the phone) runs.

``enroll``   accept the ISP's certificate (第31条1項④) and register this PC.
``run``      stay connected to the broker (outbound WSS only, 別記2).
``status``   show this PC's enrollment.
``inventory --preview``  show exactly what each 別紙5 item would send; sends nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from certs import CertError
from protocol.limits import DEFAULT_LIMITS, Limits
from protocol.text import safe_text

from .errors import AgentError, AgentErrorCode, EnrollDeclined, FingerprintMismatchError, UnreachableError
from .i18n import detect_lang, error_text, t
from .identity import Identity, default_data_dir, is_enrolled, load_identity

EXIT_ERROR = 2
EXIT_DECLINED = 3
EXIT_REFUSED = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent", description="Remote-support agent")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="default: per-user data dir or $AGENT_DATA_DIR"
    )
    parser.add_argument("--lang", default=None, help="ja or en (default: from the locale)")
    sub = parser.add_subparsers(dest="command", required=True)

    enroll = sub.add_parser("enroll", help="register this PC with the helpdesk's broker")
    enroll.add_argument("--broker", required=True, help="wss://host:port")
    enroll.add_argument("--contract-id", required=True)
    enroll.add_argument("--token", required=True)
    enroll.add_argument("--ca-fingerprint", required=True, help="sha256:… as given by the helpdesk")
    enroll.add_argument("--machine-name", default=None)
    enroll.add_argument("--force", action="store_true", help="enroll again, replacing the stored identity")

    run = sub.add_parser("run", help="connect to the broker and stay connected")
    run.add_argument("--log-level", default="INFO")
    run.add_argument(
        "--heartbeat-interval",
        type=float,
        default=DEFAULT_LIMITS.heartbeat_interval,
        help="seconds between WebSocket Ping frames (default 300; docs/heartbeat.md)",
    )
    run.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_LIMITS.idle_timeout,
        help="seconds without a Pong or message before the broker is dialled again (default 660)",
    )

    sub.add_parser("status", help="show the stored enrollment")

    support = sub.add_parser(
        "request-support", help="ask the helpdesk for help (第31条①) and run the session"
    )
    support.add_argument(
        "--test-pattern",
        action="store_true",
        help="share a synthetic test pattern instead of the real screen",
    )
    support.add_argument(
        "--test-monitors",
        type=int,
        default=1,
        metavar="N",
        help="with --test-pattern: N synthetic monitors side by side, each with its own pattern",
    )
    support.add_argument(
        "--lossless",
        action="store_true",
        help="share the real screen without JPEG: exact pixels (small print), more bytes",
    )
    support.add_argument(
        "--monitor",
        type=int,
        default=1,
        metavar="N",
        help="monitor shared first: 1.. one monitor, 0 all of them (default 1); the operator may switch",
    )
    support.add_argument("--log-level", default="WARNING")
    support.add_argument(
        "--consent-ui",
        choices=("auto", "terminal", "dialog", "both"),
        default="auto",
        help="where to ask for consent (auto: the terminal, plus a window where a display exists)",
    )
    support.add_argument(
        "--router-target",
        type=_host_port,
        default=None,
        help="where to send the UPnP search for the router model (default: the SSDP multicast group)",
    )
    support.add_argument(
        "--resume-timeout",
        type=float,
        default=60.0,
        help="seconds to confirm continuing a session interrupted by a restart (issue 16); then it ends",
    )

    sub.add_parser("end", help="end the running support session")

    inventory = sub.add_parser("inventory", help="別紙5 inventory")
    inventory.add_argument("--preview", action="store_true", required=True, help="show, send nothing")
    inventory.add_argument(
        "--router-target",
        type=_host_port,
        default=None,
        help="where to send the UPnP search for the router model (default: the SSDP multicast group)",
    )
    from .service.cli import add_parser as add_service_parser

    add_service_parser(sub)
    desktop = sub.add_parser("desktop", help="the subscriber's window (isp-agent-desktop)")
    desktop.add_argument("--autostart", action="store_true", help="at login: nothing when not enrolled")
    desktop.add_argument("--test-pattern", action="store_true", help="share a test pattern, not the screen")
    desktop.add_argument("--scale", type=float, default=1.0, help="text size factor (Ctrl +/- in the window)")
    desktop.add_argument("--trace", action="store_true", help="print each screen shown (never chat text)")
    desktop.add_argument(
        "--resume-timeout",
        type=float,
        default=60.0,
        help="seconds to confirm continuing an interrupted session",
    )
    return parser


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return host.strip("[]"), int(port)


def ask(prompt: str, *, stdin: TextIO, stdout: TextIO) -> bool:
    """Default deny: only an explicit y/yes/はい accepts; EOF or anything else declines."""
    stdout.write(prompt)
    stdout.flush()
    answer = stdin.readline()
    return answer.strip().lower() in {"y", "yes", "はい"}


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    args = build_parser().parse_args(argv)
    lang = detect_lang(args.lang)
    data_dir: Path = args.data_dir or default_data_dir()
    try:
        if args.command == "enroll":
            return _enroll(args, data_dir, lang, stdin, stdout)
        if args.command == "run":
            return _run(args, data_dir, lang, stdout)
        if args.command == "status":
            identity = _require_identity(data_dir)
            print(
                f"broker: {identity.broker_url}\ncontract: {identity.contract_id}\n"
                f"client certificate ID: {identity.serial}\nmachine: {identity.machine_name}",
                file=stdout,
            )
            return 0
        if args.command == "request-support":
            return _request_support(args, data_dir, lang, stdin, stdout)
        if args.command == "end":
            from .support import request_end

            ended = request_end(data_dir)
            print(t("support.end_requested" if ended else "support.no_session", lang), file=stdout)
            return 0 if ended else EXIT_ERROR
        if args.command == "inventory":
            from .inventory.preview import run_preview

            stored = load_identity(data_dir)  # the preview works before enrollment too
            extra = {"router_target": args.router_target} if args.router_target else {}
            return run_preview(lang=lang, cert_serial=stored.serial if stored else None, out=stdout, **extra)
        if args.command == "desktop":
            from .desktop.app import run as run_desktop

            return run_desktop(
                data_dir=data_dir,
                lang=lang,
                autostart=args.autostart,
                test_pattern=args.test_pattern,
                trace=args.trace,
                scale=max(0.5, min(3.0, args.scale)),
                resume_timeout=max(1.0, min(600.0, args.resume_timeout)),
            )
        if args.command == "service":
            from .service.cli import run as run_service

            return run_service(args, args.data_dir, lang, stdout)
    except NotEnrolled:
        print(t("run.not_enrolled", lang), file=stdout)
        return EXIT_ERROR
    except EnrollDeclined:
        print(t("enroll.declined", lang), file=stderr)
        return EXIT_DECLINED
    except FingerprintMismatchError as exc:
        print(t("enroll.fingerprint_mismatch", lang, expected=exc.expected, actual=exc.actual), file=stderr)
        return EXIT_ERROR
    except UnreachableError as exc:
        print(t("enroll.unreachable", lang, detail=safe_text(str(exc), max_chars=300)), file=stderr)
        return EXIT_ERROR
    except AgentError as exc:
        # The text may come from the broker: shown through the one rule for outside text.
        shown = error_text(exc.code, lang, str(exc))
        if isinstance(exc.code, AgentErrorCode) and str(exc) not in (exc.code.value, shown):
            shown = f"{shown} ({exc})"  # the agent's own detail (never the broker's words) after ours
        print(f"[{exc.code}] {safe_text(shown, max_chars=300)}", file=stderr)
        return EXIT_REFUSED
    except CertError as exc:
        print(f"[{exc.code}] {safe_text(str(exc), max_chars=300)}", file=stderr)
        return EXIT_ERROR
    return EXIT_ERROR


def _enroll(args: argparse.Namespace, data_dir: Path, lang: str, stdin: TextIO, stdout: TextIO) -> int:
    from .enroll import enroll

    if is_enrolled(data_dir) and not args.force:
        print(t("enroll.already", lang, path=data_dir), file=stdout)
        return EXIT_ERROR

    def confirm(fingerprint: str) -> bool:
        prompt = t(
            "enroll.consent", lang, broker=args.broker, contract=args.contract_id, fingerprint=fingerprint
        )
        return ask(prompt, stdin=stdin, stdout=stdout)

    result = asyncio.run(
        enroll(
            broker_url=args.broker,
            contract_id=args.contract_id,
            token=args.token,
            ca_fingerprint=args.ca_fingerprint,
            data_dir=data_dir,
            confirm=confirm,
            machine_name=args.machine_name,
        )
    )
    not_after = datetime.fromtimestamp(result.not_after, UTC).strftime("%Y-%m-%d")
    print(t("enroll.done", lang, serial=result.identity.serial, not_after=not_after), file=stdout)
    return 0


class NotEnrolled(AgentError):
    code = AgentErrorCode.NOT_ENROLLED


def _require_identity(data_dir: Path) -> Identity:
    identity = load_identity(data_dir)
    if identity is None:
        raise NotEnrolled()
    return identity


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _request_support(
    args: argparse.Namespace, data_dir: Path, lang: str, stdin: TextIO, stdout: TextIO
) -> int:
    from .support import SupportSession, choose_consent_ui, default_devices
    from .support_devices import indicator_wanted

    _setup_logging(args.log_level)
    identity = _require_identity(data_dir)
    source, sink = default_devices(
        test_pattern=args.test_pattern,
        lossless=args.lossless,
        monitor=args.monitor,
        test_monitors=args.test_monitors,
    )
    if source is None:
        print(t("support.no_display", lang), file=stdout)
    session = SupportSession(
        identity,
        lang=lang,
        stdin=stdin,
        out=stdout,
        source=source,
        sink=sink,
        consent_ui=choose_consent_ui(args.consent_ui, stdin),
        indicator=indicator_wanted(),
        **({"router_target": args.router_target} if args.router_target else {}),
    )
    from .resume import clear_resumable, load_resumable

    left_over = load_resumable(data_dir)  # a session interrupted by a restart (issue 16)

    async def main() -> int:
        if left_over is not None:
            timeout = max(1.0, min(600.0, args.resume_timeout))
            session.start_resume(left_over, confirmed=await session.ask_resume(left_over, timeout))
        return await session.run()

    exit_code = asyncio.run(main())
    if not session.restarting:
        clear_resumable(data_dir)
    return exit_code


def _run(args: argparse.Namespace, data_dir: Path, lang: str, stdout: TextIO) -> int:
    from .connection import AgentClient
    from .instance import single_instance

    _setup_logging(args.log_level)
    identity = _require_identity(data_dir)
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        print(t("support.no_display", lang), file=stdout, flush=True)

    def on_state(state: str, delay: float) -> None:
        key = "run.connected" if state == "connected" else "run.disconnected"
        print(t(key, lang, delay=delay), file=stdout, flush=True)

    async def main_loop() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        limits = Limits(heartbeat_interval=args.heartbeat_interval, idle_timeout=args.idle_timeout)
        client = AgentClient(identity, on_state=on_state, limits=limits)
        await client.run(stop)

    with single_instance(data_dir):
        asyncio.run(main_loop())
    return 0
