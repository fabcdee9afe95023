"""Linux collector for 別紙5 items (1), (3)–(10).

Why these sources: each one is what the system itself treats as authoritative and can be read without root
or network access — /etc/os-release, the kernel's /proc and /sys, the freedesktop defaults (xdg-settings)
and the package manager for versions. Where the machine cannot tell (a container whose root has no
filesystem UUID, no physical NIC, no mailto handler registered) the item is reported unavailable with the
reason, never guessed: the operator must be able to trust every value the subscriber agreed to send (別紙5,
第30条).

Minimisation: a method returns only what its 別紙5 item names (e.g. CPU model and clock, not core counts).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import socket
from collections.abc import Sequence
from pathlib import Path

import psutil

from agent.inventory.commands import CommandError, CommandRunner, run_command
from agent.inventory.model import ItemUnavailable, JsonValue

__all__ = [
    "LinuxCollector",
    "MountInfo",
    "parse_cpuinfo",
    "parse_desktop_entry",
    "parse_os_release",
    "root_mount",
    "upstream_version",
]

#: Root filesystems that never have a filesystem UUID of their own (containers, RAM disks, network roots).
_NO_UUID_FS = frozenset(
    {"overlay", "overlayfs", "aufs", "tmpfs", "ramfs", "rootfs", "9p", "virtiofs", "nfs", "nfs4"}
)


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5): shell-style ``KEY=value`` lines, values possibly quoted."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            continue
        fields[key.strip()] = parts[0] if parts else ""
    return fields


def parse_cpuinfo(text: str) -> dict[str, str]:
    """First value of each key in /proc/cpuinfo (processor 0 describes the model on every architecture we
    know)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def parse_desktop_entry(text: str) -> dict[str, str]:
    """Unlocalised keys of the ``[Desktop Entry]`` group of a freedesktop .desktop file."""
    fields: dict[str, str] = {}
    in_entry = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            in_entry = line == "[Desktop Entry]"
            continue
        if in_entry and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            fields.setdefault(key.strip(), value.strip())
    return fields


def upstream_version(package_version: str) -> str:
    """Debian/RPM package version to the upstream version a user sees in "About" (drop epoch and revision)."""
    version = package_version.split(":", 1)[1] if ":" in package_version.split("-", 1)[0] else package_version
    head, sep, _revision = version.rpartition("-")
    return head if sep and head else version


class MountInfo:
    """The fields of one /proc/self/mountinfo line that identify a filesystem."""

    __slots__ = ("fstype", "major", "minor", "mountpoint", "source")

    def __init__(self, *, major: int, minor: int, mountpoint: str, fstype: str, source: str) -> None:
        self.major = major
        self.minor = minor
        self.mountpoint = mountpoint
        self.fstype = fstype
        self.source = source


def _unescape_mount(field: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as \ooo octal."""
    out: list[str] = []
    i = 0
    while i < len(field):
        octal = field[i + 1 : i + 4]
        if field[i] == "\\" and len(octal) == 3 and octal.isdigit():
            out.append(chr(int(octal, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def root_mount(mountinfo_text: str) -> MountInfo | None:
    """The filesystem mounted on "/" as the process sees it (the last mount on "/" is the visible one)."""
    found: MountInfo | None = None
    for line in mountinfo_text.splitlines():
        parts = line.split()
        if len(parts) < 10 or "-" not in parts[6:]:
            continue
        sep = parts.index("-", 6)
        if len(parts) < sep + 3 or _unescape_mount(parts[4]) != "/":
            continue
        major, _, minor = parts[2].partition(":")
        try:
            found = MountInfo(
                major=int(major),
                minor=int(minor),
                mountpoint="/",
                fstype=parts[sep + 1],
                source=_unescape_mount(parts[sep + 2]),
            )
        except ValueError:
            continue
    return found


class LinuxCollector:
    """別紙5 collector for Linux desktops; paths and the command runner are injectable for tests only."""

    def __init__(
        self,
        *,
        runner: CommandRunner = run_command,
        os_release_paths: Sequence[Path] = (Path("/etc/os-release"), Path("/usr/lib/os-release")),
        mountinfo_path: Path = Path("/proc/self/mountinfo"),
        sys_class_net: Path = Path("/sys/class/net"),
        disk_by_uuid: Path = Path("/dev/disk/by-uuid"),
        cpuinfo_path: Path = Path("/proc/cpuinfo"),
        cpufreq_dir: Path = Path("/sys/devices/system/cpu/cpu0/cpufreq"),
        applications_dirs: Sequence[Path] | None = None,
    ) -> None:
        self._run = runner
        self._os_release_paths = tuple(os_release_paths)
        self._mountinfo_path = mountinfo_path
        self._sys_class_net = sys_class_net
        self._disk_by_uuid = disk_by_uuid
        self._cpuinfo_path = cpuinfo_path
        self._cpufreq_dir = cpufreq_dir
        self._applications_dirs = (
            tuple(applications_dirs) if applications_dirs is not None else _xdg_applications_dirs()
        )

    # 別紙5 (1)
    def os_info(self) -> JsonValue:
        """Distribution from os-release(5) (the standard every current distribution ships) plus the kernel."""
        fields: dict[str, str] = {}
        for path in self._os_release_paths:
            try:
                fields = parse_os_release(path.read_text(encoding="utf-8", errors="replace"))
                break
            except OSError:
                continue
        value: dict[str, str] = {
            "family": "linux",
            "name": fields.get("NAME", "Linux"),
            "kernel": platform.release(),
            "arch": platform.machine(),
        }
        for key, wire in (
            ("VERSION", "version"),
            ("VERSION_ID", "version_id"),
            ("PRETTY_NAME", "pretty_name"),
        ):
            if fields.get(key):
                value[wire] = fields[key]
        return value

    # 別紙5 (3)
    def machine_name(self) -> JsonValue:
        """The kernel hostname (what ``hostname`` prints), i.e. the name the machine calls itself."""
        name = socket.gethostname()
        if not name:
            raise ItemUnavailable("the kernel hostname is empty")
        return name

    # 別紙5 (4)
    def mac_addresses(self) -> JsonValue:
        """MACs of physical interfaces: those with a ``/sys/class/net/NAME/device`` link (bus-backed
        hardware).

        Loopback, bridges, bonds, tun/tap, veth, ifb and other software interfaces live under
        /sys/devices/virtual and have no ``device`` link, so they are left out. If no physical interface
        exists (e.g. a container), the item is unavailable with the list of interfaces skipped, rather than
        an empty list that an operator could misread as "nothing was checked".
        """
        try:
            names = sorted(p.name for p in self._sys_class_net.iterdir())
        except OSError as exc:
            raise ItemUnavailable(f"cannot list {self._sys_class_net}: {exc.strerror or exc}") from exc
        link_addrs: dict[str, str] = {}
        for name, addrs in psutil.net_if_addrs().items():
            for addr in addrs:
                if addr.family == psutil.AF_LINK and addr.address:
                    link_addrs[name] = addr.address.lower()
        found: list[dict[str, str]] = []
        skipped: list[str] = []
        for name in names:
            base = self._sys_class_net / name
            if not (base / "device").exists():
                skipped.append(name)
                continue
            mac = link_addrs.get(name)
            if mac is None:
                try:
                    mac = (base / "address").read_text(encoding="ascii").strip().lower()
                except OSError:
                    mac = ""
            if not mac or mac.replace(":", "").strip("0") == "":
                skipped.append(name)
                continue
            found.append({"interface": name, "mac": mac})
        if not found:
            listed = ", ".join(skipped) if skipped else "none"
            raise ItemUnavailable(
                f"no physical network interface (none has {self._sys_class_net}/NAME/device); "
                f"virtual or loopback interfaces skipped: {listed}"
            )
        return found

    # 別紙5 (5)
    def volume_serial(self) -> JsonValue:
        """Filesystem UUID of the root mount: udev's /dev/disk/by-uuid, then ``findmnt``, then ``blkid``.

        This is the Linux counterpart of the Windows volume serial: an identifier written into the
        filesystem when it was created. An overlay/container root has none; say so instead of inventing one.
        """
        try:
            mount = root_mount(self._mountinfo_path.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            raise ItemUnavailable(f"cannot read {self._mountinfo_path}: {exc.strerror or exc}") from exc
        if mount is None:
            raise ItemUnavailable(f"no root mount found in {self._mountinfo_path}")
        if mount.fstype in _NO_UUID_FS or mount.fstype.startswith("fuse"):
            raise ItemUnavailable(
                f"the root filesystem is {mount.fstype} ({mount.source}), which has no filesystem UUID"
                + (" (container or live system)" if mount.fstype in {"overlay", "overlayfs", "aufs"} else "")
            )
        uuid = self._uuid_from_by_uuid(mount) or self._uuid_from_command(
            ["findmnt", "-n", "-o", "UUID", "--mountpoint", "/"]
        )
        if not uuid and mount.source.startswith("/dev/"):
            uuid = self._uuid_from_command(["blkid", "-o", "value", "-s", "UUID", mount.source])
        if not uuid:
            raise ItemUnavailable(
                f"the root filesystem {mount.source} ({mount.fstype}) has no readable UUID: "
                f"not in {self._disk_by_uuid}, and findmnt/blkid report none (device not readable here)"
            )
        return {"volume": "/", "serial": uuid, "kind": "filesystem_uuid"}

    def _uuid_from_by_uuid(self, mount: MountInfo) -> str | None:
        wanted = {os.makedev(mount.major, mount.minor)}
        if mount.source.startswith("/dev/"):
            with contextlib.suppress(OSError):
                wanted.add(os.stat(mount.source).st_rdev)
        try:
            entries = sorted(self._disk_by_uuid.iterdir())
        except OSError:
            return None
        for entry in entries:
            try:
                if os.stat(entry).st_rdev in wanted:
                    return entry.name
            except OSError:
                continue
        return None

    def _uuid_from_command(self, args: list[str]) -> str | None:
        try:
            out = self._run(args).strip()
        except CommandError:
            return None
        return out.splitlines()[0].strip() if out else None

    # 別紙5 (6)
    def volume_free(self) -> JsonValue:
        """Bytes free on "/" for an ordinary user (statvfs f_bavail), which is what file managers show."""
        try:
            usage = psutil.disk_usage("/")
        except OSError as exc:
            raise ItemUnavailable(f"statvfs('/') failed: {exc.strerror or exc}") from exc
        return {"volume": "/", "free_bytes": int(usage.free)}

    # 別紙5 (7)
    def default_browser(self) -> JsonValue:
        """``xdg-settings get default-web-browser`` (freedesktop default), then its .desktop file and
        package."""
        return self._default_app(["xdg-settings", "get", "default-web-browser"], "default web browser")

    # 別紙5 (8)
    def default_mail(self) -> JsonValue:
        """The mailto: handler per ``xdg-settings``, which is what a mailto link on this desktop opens."""
        return self._default_app(
            ["xdg-settings", "get", "default-url-scheme-handler", "mailto"], "mailto handler (mail client)"
        )

    def _default_app(self, args: list[str], what: str) -> JsonValue:
        try:
            desktop_id = self._run(args).strip()
        except CommandError as exc:
            raise ItemUnavailable(f"cannot ask xdg-settings for the {what}: {exc}") from exc
        if not desktop_id:
            raise ItemUnavailable(f"no {what} is registered (xdg-settings returned nothing)")
        desktop_id = desktop_id.splitlines()[0].strip()
        value: dict[str, str | None] = {"id": desktop_id, "name": None, "version": None}
        path = self._find_desktop_file(desktop_id)
        if path is None:
            value["version_reason"] = f"desktop file {desktop_id} not found in the XDG data directories"
            return value
        try:
            entry = parse_desktop_entry(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            entry = {}
        value["name"] = entry.get("Name") or None
        version, source_or_reason = self._package_version(path)
        value["version"] = version
        value["version_source" if version else "version_reason"] = source_or_reason
        return value

    def _find_desktop_file(self, desktop_id: str) -> Path | None:
        if "/" in desktop_id or not desktop_id.endswith(".desktop"):
            return None
        # Desktop-entry spec: "foo-bar.desktop" may live at applications/foo/bar.desktop.
        candidates = [desktop_id]
        if "-" in desktop_id:
            candidates.append(desktop_id.replace("-", "/", 1))
        for directory in self._applications_dirs:
            for candidate in candidates:
                path = directory / candidate
                if path.is_file():
                    return path
        return None

    def _package_version(self, desktop_file: Path) -> tuple[str | None, str]:
        """Version of the package that owns the .desktop file: the browser is never started to ask it."""
        try:
            owner = self._run(["dpkg-query", "-S", str(desktop_file)]).strip()
        except CommandError:
            owner = ""
        if owner and ":" in owner:
            package = owner.split(":", 1)[0].split(",")[0].strip()
            try:
                version = self._run(["dpkg-query", "-W", "-f", "${Version}", package]).strip()
            except CommandError:
                version = ""
            if version:
                return upstream_version(version), f"dpkg package {package} {version}"
        try:
            rpm = self._run(
                ["rpm", "-qf", "--qf", "%{NAME} %{VERSION}-%{RELEASE}\\n", str(desktop_file)]
            ).strip()
        except CommandError:
            rpm = ""
        if rpm and " " in rpm:
            package, _, version = rpm.splitlines()[0].partition(" ")
            return upstream_version(version), f"rpm package {package} {version}"
        return None, f"{desktop_file} is not owned by a dpkg or rpm package (flatpak, snap or manual install)"

    # 別紙5 (9)
    def cpu(self) -> JsonValue:
        """Model from /proc/cpuinfo; clock from cpufreq's rated maximum, else the kernel's current "cpu
        MHz"."""
        try:
            info = parse_cpuinfo(self._cpuinfo_path.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            raise ItemUnavailable(f"cannot read {self._cpuinfo_path}: {exc.strerror or exc}") from exc
        model = next(
            (info[k] for k in ("model name", "Model", "Processor", "cpu model", "cpu") if info.get(k)), None
        )
        if model is None:
            raise ItemUnavailable(f"{self._cpuinfo_path} names no CPU model on this architecture")
        value: dict[str, str | int | None] = {"model": model, "mhz": None}
        try:
            khz = int((self._cpufreq_dir / "cpuinfo_max_freq").read_text(encoding="ascii").strip())
            value["mhz"], value["mhz_kind"] = round(khz / 1000), "max"
        except (OSError, ValueError):
            try:
                value["mhz"], value["mhz_kind"] = round(float(info["cpu MHz"])), "current"
            except (KeyError, ValueError):
                value["mhz_reason"] = "neither cpufreq nor /proc/cpuinfo reports a clock"
        return value

    # 別紙5 (10)
    def memory(self) -> JsonValue:
        """Physical memory the kernel manages (MemTotal), in bytes."""
        return {"total_bytes": int(psutil.virtual_memory().total)}


def _xdg_applications_dirs() -> tuple[Path, ...]:
    """XDG base-directory search path for .desktop files: data home first, then data dirs."""
    home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    dirs = os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    return tuple(Path(d) / "applications" for d in [home, *dirs.split(":")] if d)
