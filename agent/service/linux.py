"""Linux: a systemd system unit (template, one instance per subscriber) and an XDG autostart entry.

Choice: a **system** unit ``isp-remote-support-agent@.service`` with ``User=%i``, enabled as
``isp-remote-support-agent@<subscriber>.service``, rather than a ``systemd --user`` unit. It starts
at boot, before anyone logs in, so after a restart the PC is back online for the operator without a
login session or lingering; it still runs as the subscriber (never root), so it uses the identity the
subscriber enrolled in their own data dir (``User=`` sets ``$HOME``). Installing needs root once
(``sudo isp-agent service install``, or the .deb). The desktop app is a per-session program and
starts from ``/etc/xdg/autostart`` (freedesktop Desktop Application Autostart spec).

``root`` lets a package build or a test write the same files under another directory; enabling
then goes through ``systemctl --root``, which works on unit files without a running systemd.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .model import DESCRIPTION, DESKTOP_NAME, DISPLAY_NAME, SERVICE_NAME, Layout, Report, quote_exec

UNIT_TEMPLATE: Final = f"{SERVICE_NAME}@.service"
SYSTEMCTL_TIMEOUT: Final = 30.0
"""Seconds allowed for one systemctl call."""

PACKAGE_UNIT_DIR: Final = Path("usr/lib/systemd/system")
"""Where the .deb puts the unit (relative to the root); ``service install`` leaves it there."""
LOCAL_UNIT_DIR: Final = Path("etc/systemd/system")
"""Where ``service install`` writes the unit when no package provides one."""
PACKAGE_AUTOSTART: Final = Path("etc/xdg/autostart") / f"{DESKTOP_NAME}.desktop"
"""The system-wide autostart entry (the .deb's conffile, or written by ``service install``)."""
FIRST_HUMAN_UID: Final = 1000
"""Debian's first uid for people (adduser.conf FIRST_UID); the service never runs as a system account."""
NOBODY_UID: Final = 65534
WANTS: Final = Path("etc/systemd/system/multi-user.target.wants")


def unit_text(layout: Layout) -> str:
    """The unit: restart on failure but not on refusals that retrying cannot fix (exit 2 not
    enrolled / error, 3 declined, 4 revoked or already running), hardened, no inbound ports."""
    return f"""[Unit]
Description={DISPLAY_NAME} for %i
Documentation=https://github.com/example/isp-remote-support/blob/main/docs/install.md
After=network-online.target
Wants=network-online.target

[Service]
# {DESCRIPTION}
Type=simple
User=%i
ExecStart={quote_exec(layout.run_argv())}
Restart=on-failure
RestartSec=10
RestartPreventExitStatus=2 3 4
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
UMask=0077

[Install]
WantedBy=multi-user.target
"""


def desktop_entry(layout: Layout) -> str:
    """The XDG autostart entry of the desktop app (Japanese name first for a ja desktop)."""
    return f"""[Desktop Entry]
Type=Application
Name=ISP Remote Support
Name[ja]=リモートサポート
Comment=Ask the helpdesk for help; shows the support code in large digits
Comment[ja]=ヘルプデスクにサポートを依頼します（サポート番号を大きく表示します）
TryExec={layout.desktop[0]}
Exec={quote_exec(layout.desktop)}
Terminal=false
Categories=Network;RemoteAccess;
X-GNOME-Autostart-enabled=true
"""


def instance(user: str) -> str:
    return f"{SERVICE_NAME}@{user}.service"


def systemd_booted(root: Path = Path("/")) -> bool:
    """sd_booted(): systemd is PID 1 (a container or chroot without it still has unit files)."""
    return root == Path("/") and Path("/run/systemd/system").is_dir()


@dataclass(frozen=True, slots=True)
class Paths:
    root: Path

    @property
    def package_unit(self) -> Path:
        return self.root / PACKAGE_UNIT_DIR / UNIT_TEMPLATE

    @property
    def local_unit(self) -> Path:
        return self.root / LOCAL_UNIT_DIR / UNIT_TEMPLATE

    @property
    def autostart(self) -> Path:
        return self.root / PACKAGE_AUTOSTART

    def unit(self) -> Path | None:
        """The unit in use: the package's, else one ``service install`` wrote, else None."""
        for path in (self.local_unit, self.package_unit):
            if path.is_file():
                return path
        return None


def _systemctl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("systemctl")
    if exe is None:
        return subprocess.CompletedProcess(["systemctl", *args], 127, "", "systemctl not found")
    argv = [exe, *args] if systemd_booted(root) else [exe, f"--root={root}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT, check=False)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    os.replace(tmp, path)


def check_user(user: str) -> None:
    """The subscriber's account must exist (never run the service as root)."""
    if user == "root":
        raise ValueError("the service runs as the subscriber, not as root: pass --user NAME")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"no such user: {user}") from None
    if entry.pw_uid < FIRST_HUMAN_UID or entry.pw_uid == NOBODY_UID:
        raise ValueError(f"{user} is a system account, not a subscriber's: pass --user NAME")


def install(layout: Layout, *, root: Path = Path("/"), autostart: bool = True) -> Report:
    report = Report()
    paths = Paths(root)
    if paths.package_unit.is_file():
        report.add(f"unit: {paths.package_unit} (from the package)")
    else:
        _write(paths.local_unit, unit_text(layout))
        report.add(f"unit: {paths.local_unit} (written)")
    if systemd_booted(root):
        _systemctl(root, "daemon-reload")
    enable = (
        ["enable", "--now", instance(layout.user)]
        if systemd_booted(root)
        else ["enable", instance(layout.user)]
    )
    result = _systemctl(root, *enable)
    if result.returncode == 0:
        report.add(f"enabled: {instance(layout.user)}")
    else:
        report.fail(f"systemctl {' '.join(enable)} failed: {result.stderr.strip()}")
    if autostart:
        if paths.autostart.is_file():
            report.add(f"autostart: {paths.autostart} (present)")
        else:
            _write(paths.autostart, desktop_entry(layout))
            report.add(f"autostart: {paths.autostart} (written)")
    return report


def enabled_instances(root: Path = Path("/")) -> list[str]:
    """Every ``…@user.service`` enabled for boot (the symlinks ``systemctl enable`` made)."""
    wants = root / WANTS
    if not wants.is_dir():
        return []
    return sorted(p.name for p in wants.iterdir() if p.name.startswith(f"{SERVICE_NAME}@"))


def uninstall(*, root: Path = Path("/"), package_owned: bool = False) -> Report:
    """Stop and disable every instance, remove what ``install`` wrote. ``package_owned``: the .deb's
    own files stay for dpkg to remove."""
    report = Report()
    paths = Paths(root)
    for name in enabled_instances(root):
        args = ["disable", "--now", name] if systemd_booted(root) else ["disable", name]
        result = _systemctl(root, *args)
        if result.returncode == 0:
            report.add(f"disabled: {name}")
        else:
            report.fail(f"systemctl {' '.join(args)} failed: {result.stderr.strip()}")
    removable = [paths.local_unit] + ([] if package_owned else [paths.autostart])
    for path in removable:
        if path.is_file():
            path.unlink()
            report.add(f"removed: {path}")
    if systemd_booted(root):
        _systemctl(root, "daemon-reload")
    return report


def status(user: str, *, root: Path = Path("/")) -> Report:
    """Unit file, enablement (from the files, so it works without systemd as PID 1), and the
    running state where systemd runs."""
    report = Report()
    paths = Paths(root)
    unit = paths.unit()
    if unit is None:
        report.fail(f"unit: not installed ({paths.package_unit} / {paths.local_unit} missing)")
        return report
    report.add(f"unit: {unit}")
    name = instance(user)
    enabled = _systemctl(root, "is-enabled", name)
    state = enabled.stdout.strip() or "disabled"
    if enabled.returncode != 0 and name in enabled_instances(root):
        state = "enabled"
    report.add(f"service: {name} {state}")
    if state != "enabled":
        report.ok = False
    if systemd_booted(root):
        active = _systemctl(root, "is-active", name)
        report.add(f"running: {active.stdout.strip() or 'unknown'}")
    else:
        report.add("running: unknown (systemd is not running on this machine)")
    report.add(f"autostart: {paths.autostart if paths.autostart.is_file() else 'none'}")
    return report
