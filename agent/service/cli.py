"""``agent service install|uninstall|status``: the unattended agent and the desktop app at login.

Linux: needs root once (``sudo isp-agent service install``; the subscriber is ``$SUDO_USER`` or
``--user``). ``--root DIR`` writes the same files under DIR (package builds, tests). Uninstall
removes the service, its enablement and the autostart entry; the subscriber's enrollment (key,
certificate) stays unless ``--purge-data`` is given (the subscriber chooses).
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import sys
from pathlib import Path
from typing import TextIO

from ..identity import APP_NAME
from .model import Layout, Report, agent_command, desktop_command

EXIT_NOT_INSTALLED = 3
EXIT_ERROR = 2

TEXT = {
    "install": ("サービスを設定しました。", "The service is set up."),
    "uninstall": ("サービスを削除しました。", "The service is removed."),
    "status": ("サービスの状態:", "Service status:"),
    "kept": (
        "登録情報（証明書）は残しています: {path}（削除するには --purge-data）",
        "The enrollment (certificate) is kept: {path} (remove it with --purge-data)",
    ),
    "purged": ("登録情報を削除しました: {path}", "The enrollment was removed: {path}"),
    "needs_admin": (
        "[needs_admin] 管理者の権限が必要です: sudo isp-agent service …",
        "[needs_admin] This needs administrator rights: sudo isp-agent service …",
    ),
    "failed": ("[service_failed] 設定できませんでした:", "[service_failed] Could not set up the service:"),
}


def _t(key: str, lang: str, **values: object) -> str:
    ja, en = TEXT[key]
    return (ja if lang == "ja" else en).format(**values)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    service = sub.add_parser("service", help="install the always-connected agent and the app at login")
    actions = service.add_subparsers(dest="service_command", required=True)
    for name, text in (
        ("install", "run `agent run` as a service and the desktop app at login"),
        ("uninstall", "remove the service and the autostart entry"),
        ("status", "show whether the service is installed, enabled and running"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--root", type=Path, default=Path("/"), help="write under DIR (package builds)")
        if name != "uninstall":
            action.add_argument("--user", default=None, help="the subscriber's account (default: $SUDO_USER)")
    actions.choices["install"].add_argument("--no-autostart", action="store_true")
    uninstall = actions.choices["uninstall"]
    uninstall.add_argument("--purge-data", action="store_true", help="also delete this PC's enrollment")
    uninstall.add_argument("--user", default=None, help="whose enrollment --purge-data deletes")
    uninstall.add_argument("--package", action="store_true", help=argparse.SUPPRESS)  # the .deb's prerm


def subscriber(explicit: str | None) -> str:
    return explicit or os.environ.get("SUDO_USER") or getpass.getuser()


def user_data_dir(user: str) -> Path:
    """The subscriber's default data dir, also when root asks (Linux: ~user/.local/share/…)."""
    if sys.platform.startswith("linux") and user != getpass.getuser():
        import pwd

        return Path(pwd.getpwnam(user).pw_dir) / ".local" / "share" / APP_NAME
    from ..identity import default_data_dir

    return default_data_dir()


def run(args: argparse.Namespace, data_dir: Path | None, lang: str, out: TextIO) -> int:
    root: Path = args.root
    if sys.platform.startswith("linux") and root == Path("/") and os.geteuid() != 0:
        if args.service_command != "status":
            print(_t("needs_admin", lang), file=out)
            return EXIT_ERROR
    try:
        report = _dispatch(args, data_dir, lang, root)
    except (OSError, ValueError) as exc:
        print(f"{_t('failed', lang)} {exc}", file=out)
        return EXIT_ERROR
    head = {"install": "install", "uninstall": "uninstall", "status": "status"}[args.service_command]
    if report.ok or head == "status":
        print(_t(head, lang), file=out)
    else:
        print(_t("failed", lang), file=out)
    for line in report.lines:
        print(f"  {line}", file=out)
    if report.ok:
        return 0
    return EXIT_NOT_INSTALLED if head == "status" else EXIT_ERROR


def _dispatch(args: argparse.Namespace, data_dir: Path | None, lang: str, root: Path) -> Report:
    command: str = args.service_command
    if sys.platform.startswith("linux"):
        from . import linux

        if command == "install":
            user = subscriber(args.user)
            if root == Path("/"):
                linux.check_user(user)
            layout = Layout(user=user, agent=agent_command(), desktop=desktop_command(), data_dir=data_dir)
            return linux.install(layout, root=root, autostart=not args.no_autostart)
        if command == "status":
            return linux.status(subscriber(args.user), root=root)
        report = linux.uninstall(root=root, package_owned=args.package)
    elif sys.platform == "darwin":
        from . import macos

        if command == "install":
            layout = Layout(
                user=subscriber(args.user),
                agent=agent_command(),
                desktop=desktop_command(),
                data_dir=data_dir,
            )
            return macos.install(layout, root=root, autostart=not args.no_autostart)
        if command == "status":
            return macos.status(root=root)
        report = macos.uninstall(root=root)
    elif sys.platform == "win32":  # pragma: no cover - Windows only
        from . import windows

        if command == "install":
            layout = Layout(
                user=getpass.getuser(),
                agent=agent_command(),
                desktop=desktop_command(),
                data_dir=data_dir or user_data_dir(getpass.getuser()),
            )
            return Report(lines=windows.install(layout))
        if command == "status":
            import subprocess

            result = subprocess.run(windows.status_command(), capture_output=True, text=True, check=False)
            return Report(lines=result.stdout.splitlines(), ok=result.returncode == 0)
        report = Report(lines=windows.uninstall())
    else:
        raise OSError(f"no service support on {sys.platform}")
    if args.purge_data:
        path = data_dir or user_data_dir(subscriber(args.user))
        if path.is_dir():
            shutil.rmtree(path)
        report.add(_t("purged", lang, path=path))
    elif not args.package:
        report.add(_t("kept", lang, path=data_dir or user_data_dir(subscriber(args.user))))
    return report
