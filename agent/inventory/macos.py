"""macOS collector for 別紙5 items (1), (3)–(10).

Why these sources: Apple's own command-line tools and property lists, readable without admin rights —
``sw_vers``, ``scutil --get ComputerName``, ``networksetup -listallhardwareports`` (hardware ports only),
``diskutil info -plist /`` (volume UUID and free space as Finder computes it), ``sysctl`` for CPU and
memory, and the LaunchServices handler list the "Default web browser" setting writes. All commands go
through an injected ``CommandRunner`` so the parsing is tested on any OS against recorded output. An item
macOS does not expose (e.g. the clock of Apple silicon) is reported as such, never guessed (別紙5, 第30条).
"""

from __future__ import annotations

import plistlib
import re
from pathlib import Path
from typing import Any, Final

from agent.inventory.commands import CommandError, CommandRunner, run_command
from agent.inventory.model import ItemUnavailable, JsonValue

__all__ = ["LAUNCH_SERVICES_PLIST", "MacOSCollector", "parse_hardware_ports", "parse_sw_vers"]

LAUNCH_SERVICES_PLIST: Final = Path(
    "Library/Preferences/com.apple.LaunchServices/com.apple.launchservices.secure.plist"
)

#: What macOS uses when the user never chose: documented system defaults, not a guess.
_SYSTEM_DEFAULTS: Final = {
    "https": "com.apple.safari",
    "http": "com.apple.safari",
    "mailto": "com.apple.mail",
}

_BUNDLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,254}\Z")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")


def parse_sw_vers(text: str) -> dict[str, str]:
    """``sw_vers`` prints ``ProductName:<tab>macOS`` lines."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def parse_hardware_ports(text: str) -> list[dict[str, str]]:
    """Blocks of ``Hardware Port`` / ``Device`` / ``Ethernet Address`` from ``networksetup``."""
    ports: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        line = line.strip()
        if not line:
            if current:
                ports.append(current)
            current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    return [p for p in ports if "Hardware Port" in p]


class MacOSCollector:
    """別紙5 collector for macOS; ``home`` is the subscriber's home (LaunchServices preferences live
    there)."""

    def __init__(self, *, runner: CommandRunner = run_command, home: Path | None = None) -> None:
        self._run = runner
        self._home = home if home is not None else Path.home()

    def _cmd(self, args: list[str], what: str) -> str:
        try:
            return self._run(args)
        except CommandError as exc:
            raise ItemUnavailable(f"cannot read {what}: {exc}") from exc

    # 別紙5 (1)
    def os_info(self) -> JsonValue:
        """``sw_vers``: product name, version and build, as "About This Mac" shows them."""
        fields = parse_sw_vers(self._cmd(["sw_vers"], "the OS version"))
        if not fields.get("ProductName") or not fields.get("ProductVersion"):
            raise ItemUnavailable("sw_vers printed no ProductName/ProductVersion")
        value = {"family": "macos", "name": fields["ProductName"], "version": fields["ProductVersion"]}
        if fields.get("BuildVersion"):
            value["build"] = fields["BuildVersion"]
        return value

    # 別紙5 (3)
    def machine_name(self) -> JsonValue:
        """The user-visible computer name (System Settings > General > Sharing)."""
        name = self._cmd(["scutil", "--get", "ComputerName"], "the computer name").strip()
        if not name:
            raise ItemUnavailable("scutil reports an empty ComputerName")
        return name

    # 別紙5 (4)
    def mac_addresses(self) -> JsonValue:
        """Hardware ports only; the Thunderbolt Bridge (a software bridge0) and ports without an address are
        left out."""
        ports = parse_hardware_ports(
            self._cmd(["networksetup", "-listallhardwareports"], "the hardware network ports")
        )
        found: list[dict[str, str]] = []
        for port in ports:
            device = port.get("Device", "")
            mac = port.get("Ethernet Address", "").lower()
            if not device or device.startswith("bridge") or not _MAC.match(mac):
                continue
            found.append({"interface": device, "mac": mac})
        if not found:
            raise ItemUnavailable("networksetup lists no hardware port with a MAC address")
        return sorted(found, key=lambda p: p["interface"])

    def _disk_info(self) -> dict[str, Any]:
        out = self._cmd(["diskutil", "info", "-plist", "/"], "the system volume")
        try:
            info = plistlib.loads(out.encode("utf-8"))
        except (plistlib.InvalidFileException, ValueError) as exc:
            raise ItemUnavailable("diskutil info -plist / did not return a property list") from exc
        if not isinstance(info, dict):
            raise ItemUnavailable("diskutil info -plist / did not return a dictionary")
        return info

    # 別紙5 (5)
    def volume_serial(self) -> JsonValue:
        """The volume UUID of "/" (macOS has no FAT-style serial; the UUID is its stable volume
        identifier)."""
        uuid = self._disk_info().get("VolumeUUID")
        if not isinstance(uuid, str) or not uuid:
            raise ItemUnavailable("diskutil reports no VolumeUUID for /")
        return {"volume": "/", "serial": uuid, "kind": "volume_uuid"}

    # 別紙5 (6)
    def volume_free(self) -> JsonValue:
        """APFS volumes share their container's space, so the container's free space is the real free
        space."""
        info = self._disk_info()
        for key in ("APFSContainerFree", "FreeSpace"):
            free = info.get(key)
            if isinstance(free, int) and not isinstance(free, bool):
                return {"volume": "/", "free_bytes": free}
        raise ItemUnavailable("diskutil reports neither APFSContainerFree nor FreeSpace for /")

    # 別紙5 (7)
    def default_browser(self) -> JsonValue:
        """LaunchServices' https (else http) handler, as set in System Settings > Desktop & Dock."""
        return self._default_app(("https", "http"))

    # 別紙5 (8)
    def default_mail(self) -> JsonValue:
        """LaunchServices' mailto handler, as set in Mail > Settings > Default email reader."""
        return self._default_app(("mailto",))

    def _handlers(self) -> list[Any] | None:
        """LSHandlers from the user's LaunchServices plist; None if the user never chose any handler."""
        path = self._home / LAUNCH_SERVICES_PLIST
        try:
            with path.open("rb") as fh:
                data = plistlib.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, plistlib.InvalidFileException, ValueError) as exc:
            raise ItemUnavailable(f"cannot read the LaunchServices preferences: {exc}") from exc
        handlers = data.get("LSHandlers") if isinstance(data, dict) else None
        return handlers if isinstance(handlers, list) else None

    def _default_app(self, schemes: tuple[str, ...]) -> JsonValue:
        handlers = self._handlers() or []
        bundle_id: str | None = None
        source = "LaunchServices user setting"
        for scheme in schemes:
            for entry in handlers:
                if isinstance(entry, dict) and entry.get("LSHandlerURLScheme") == scheme:
                    role = entry.get("LSHandlerRoleAll") or entry.get("LSHandlerRoleViewer")
                    if isinstance(role, str) and role and role != "-":
                        bundle_id = role
                        break
            if bundle_id:
                break
        if bundle_id is None:
            bundle_id = _SYSTEM_DEFAULTS[schemes[0]]
            source = "macOS system default (no LaunchServices user setting)"
        value: dict[str, str | None] = {"id": bundle_id, "name": None, "version": None, "source": source}
        if not _BUNDLE_ID.match(bundle_id):
            value["version_reason"] = "bundle id is not well-formed; not looked up"
            return value
        try:
            found = self._run(["mdfind", f"kMDItemCFBundleIdentifier == '{bundle_id}'c"]).strip()
        except CommandError as exc:
            value["version_reason"] = f"Spotlight lookup failed: {exc}"
            return value
        apps = [line for line in found.splitlines() if line.endswith(".app")]
        if not apps:
            value["version_reason"] = f"Spotlight finds no application with bundle id {bundle_id}"
            return value
        app = sorted(apps, key=lambda p: (not p.startswith("/Applications/"), p))[0]
        try:
            with (Path(app) / "Contents" / "Info.plist").open("rb") as fh:
                info = plistlib.load(fh)
        except (OSError, plistlib.InvalidFileException, ValueError) as exc:
            value["version_reason"] = f"cannot read {app}/Contents/Info.plist: {exc}"
            return value
        name = info.get("CFBundleDisplayName") or info.get("CFBundleName")
        value["name"] = name if isinstance(name, str) else None
        version = info.get("CFBundleShortVersionString")
        if isinstance(version, str) and version:
            value["version"] = version
            value["version_source"] = f"{app}/Contents/Info.plist"
        else:
            value["version_reason"] = f"{app} declares no CFBundleShortVersionString"
        return value

    # 別紙5 (9)
    def cpu(self) -> JsonValue:
        """``machdep.cpu.brand_string``; ``hw.cpufrequency`` exists only on Intel Macs, so say so on Apple
        silicon."""
        model = self._cmd(["sysctl", "-n", "machdep.cpu.brand_string"], "the CPU model").strip()
        if not model:
            raise ItemUnavailable("sysctl machdep.cpu.brand_string is empty")
        value: dict[str, str | int | None] = {"model": model, "mhz": None}
        try:
            hz = int(self._run(["sysctl", "-n", "hw.cpufrequency"]).strip())
            value["mhz"], value["mhz_kind"] = round(hz / 1_000_000), "rated"
        except (CommandError, ValueError):
            value["mhz_reason"] = (
                "macOS does not report a CPU clock here (hw.cpufrequency absent: Apple silicon)"
            )
        return value

    # 別紙5 (10)
    def memory(self) -> JsonValue:
        """``hw.memsize``: installed physical memory in bytes."""
        out = self._cmd(["sysctl", "-n", "hw.memsize"], "the memory size").strip()
        try:
            return {"total_bytes": int(out)}
        except ValueError as exc:
            raise ItemUnavailable(f"sysctl hw.memsize printed {out[:40]!r}") from exc
