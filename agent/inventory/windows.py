"""Windows collector for 別紙5 items (1), (3)–(10).

Why these sources: they are where Windows itself keeps each fact, read without elevation — the registry
(CurrentVersion, ComputerName, CentralProcessor, the per-user UserChoice ProgIds that Settings > Default
apps writes), GetVolumeInformationW / GetDiskFreeSpaceExW for the system volume, the version resource of the
default browser's executable, and ``Get-NetAdapter -Physical`` for the interfaces Windows itself calls
physical.

All OS access goes through injected interfaces (``RegistryReader``, ``VolumeInfoReader``, a file-version
function, a ``CommandRunner``) so the logic is tested on any OS against recorded ``reg query`` output; the
real ctypes/winreg implementations exist only when ``sys.platform == "win32"``. Unreadable items become
unavailable with a reason, never a guess (別紙5, 第30条).
"""

from __future__ import annotations

import json
import ntpath
import sys
from collections.abc import Callable
from typing import Final, Protocol

import psutil

from agent.inventory.commands import CommandError, CommandRunner, run_command
from agent.inventory.model import ItemUnavailable, JsonValue

__all__ = [
    "RegValue",
    "RegistryReader",
    "VolumeInfoReader",
    "WindowsCollector",
    "exe_from_command",
    "format_volume_serial",
    "normalize_key",
]

RegValue = str | int | bytes | list[str]

CURRENT_VERSION: Final = r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion"
COMPUTER_NAME: Final = r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\ComputerName\ActiveComputerName"
CPU0: Final = r"HKEY_LOCAL_MACHINE\HARDWARE\DESCRIPTION\System\CentralProcessor\0"
ENVIRONMENT: Final = r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\Session Manager\Environment"
URL_ASSOC: Final = r"HKEY_CURRENT_USER\Software\Microsoft\Windows\Shell\Associations\UrlAssociations"
CLASSES: Final = "HKEY_CLASSES_ROOT"

#: PowerShell's own notion of "physical" (NDIS: hardware-backed), JSON for a stable parse.
GET_PHYSICAL_ADAPTERS: Final = (
    "powershell",
    "-NoProfile",
    "-NonInteractive",
    "-Command",
    "Get-NetAdapter -Physical | Select-Object Name, InterfaceDescription, MacAddress"
    " | ConvertTo-Json -Compress",
)

_HIVES: Final = {
    "HKLM": "HKEY_LOCAL_MACHINE",
    "HKCU": "HKEY_CURRENT_USER",
    "HKCR": "HKEY_CLASSES_ROOT",
    "HKU": "HKEY_USERS",
}


def normalize_key(key: str) -> str:
    r"""Canonical key path: full hive name, backslashes, no trailing separator (``HKLM\X`` ==
    ``HKEY_LOCAL_MACHINE\X``)."""
    key = key.replace("/", "\\").strip("\\")
    hive, sep, rest = key.partition("\\")
    hive = _HIVES.get(hive.upper(), hive.upper())
    return f"{hive}{sep}{rest}"


class RegistryReader(Protocol):
    """Reads one registry value; ``name == ""`` is the key's default value. None if the key or value is
    absent."""

    def read_value(self, key: str, name: str) -> RegValue | None: ...


class VolumeInfoReader(Protocol):
    """The two volume calls of 別紙5 (5) and (6); ``root`` is like ``"C:\\"``. Raise OSError on failure."""

    def volume_serial(self, root: str) -> int:
        """GetVolumeInformationW's lpVolumeSerialNumber."""
        ...

    def free_bytes(self, root: str) -> int:
        """GetDiskFreeSpaceExW's lpFreeBytesAvailableToCaller."""
        ...


def format_volume_serial(serial: int) -> str:
    """The serial as ``dir`` and ``vol`` print it: ``XXXX-XXXX`` upper-case hex, which is what users read
    out."""
    serial &= 0xFFFFFFFF
    return f"{serial >> 16:04X}-{serial & 0xFFFF:04X}"


def exe_from_command(command: str) -> str | None:
    r"""The executable of a ``shell\open\command`` line (quoted path, or unquoted path ending in .exe)."""
    command = command.strip()
    if command.startswith('"'):
        end = command.find('"', 1)
        return command[1:end] if end > 1 else None
    lower = command.lower()
    end = lower.find(".exe")
    if end > 0:
        return command[: end + 4]
    first = command.split(" ", 1)[0]
    return first or None


class WindowsCollector:
    """別紙5 collector for Windows 10/11."""

    def __init__(
        self,
        *,
        registry: RegistryReader,
        volumes: VolumeInfoReader,
        file_version: Callable[[str], str | None],
        runner: CommandRunner = run_command,
        memory_total: Callable[[], int] | None = None,
    ) -> None:
        self._reg = registry
        self._volumes = volumes
        self._file_version = file_version
        self._run = runner
        self._memory_total = memory_total or (lambda: int(psutil.virtual_memory().total))

    def _str(self, key: str, name: str) -> str | None:
        value = self._reg.read_value(normalize_key(key), name)
        if isinstance(value, str):
            return value.strip() or None
        if isinstance(value, int):
            return str(value)
        return None

    def _int(self, key: str, name: str) -> int | None:
        value = self._reg.read_value(normalize_key(key), name)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip(), 0)
            except ValueError:
                return None
        return None

    # 別紙5 (1)
    def os_info(self) -> JsonValue:
        """ProductName / DisplayVersion / build.UBR from CurrentVersion, as ``winver`` shows them.

        Windows 11 still writes "Windows 10 …" into ProductName; Microsoft's documented test is build >=
        22000, so the name is corrected from the build number rather than trusting the string.
        """
        product = self._str(CURRENT_VERSION, "ProductName")
        if product is None:
            raise ItemUnavailable(rf"{CURRENT_VERSION}\ProductName is missing")
        build = self._str(CURRENT_VERSION, "CurrentBuild") or self._str(CURRENT_VERSION, "CurrentBuildNumber")
        if build is not None and build.isdigit() and int(build) >= 22000 and product.startswith("Windows 10"):
            product = "Windows 11" + product[len("Windows 10") :]
        value: dict[str, str] = {"family": "windows", "name": product}
        version = self._str(CURRENT_VERSION, "DisplayVersion") or self._str(CURRENT_VERSION, "ReleaseId")
        if version:
            value["version"] = version
        if build:
            ubr = self._int(CURRENT_VERSION, "UBR")
            value["build"] = f"{build}.{ubr}" if ubr is not None else build
        arch = self._str(ENVIRONMENT, "PROCESSOR_ARCHITECTURE")
        if arch:
            value["arch"] = arch
        return value

    # 別紙5 (3)
    def machine_name(self) -> JsonValue:
        """The active NetBIOS computer name (what System > About shows as device name)."""
        name = self._str(COMPUTER_NAME, "ComputerName")
        if name is None:
            raise ItemUnavailable(rf"{COMPUTER_NAME}\ComputerName is missing")
        return name

    # 別紙5 (4)
    def mac_addresses(self) -> JsonValue:
        """``Get-NetAdapter -Physical``: Hyper-V, VPN and other virtual adapters are excluded by Windows
        itself."""
        try:
            out = self._run(GET_PHYSICAL_ADAPTERS).strip()
        except CommandError as exc:
            raise ItemUnavailable(f"Get-NetAdapter failed: {exc}") from exc
        if not out:
            raise ItemUnavailable("Get-NetAdapter -Physical lists no physical network adapter")
        try:
            data = json.loads(out)
        except ValueError as exc:
            raise ItemUnavailable("Get-NetAdapter output is not JSON") from exc
        adapters = data if isinstance(data, list) else [data]  # ConvertTo-Json unwraps a single object
        found: list[dict[str, str]] = []
        for adapter in adapters:
            if not isinstance(adapter, dict):
                continue
            name, mac = adapter.get("Name"), adapter.get("MacAddress")
            if isinstance(name, str) and isinstance(mac, str) and mac.strip():
                found.append({"interface": name, "mac": mac.strip().replace("-", ":").lower()})
        if not found:
            raise ItemUnavailable("Get-NetAdapter -Physical lists no adapter with a MAC address")
        return sorted(found, key=lambda a: a["interface"])

    def _system_root(self) -> str:
        system_root = self._str(CURRENT_VERSION, "SystemRoot")
        if system_root is None:
            raise ItemUnavailable(rf"{CURRENT_VERSION}\SystemRoot is missing")
        drive, _ = ntpath.splitdrive(system_root)
        if not drive:
            raise ItemUnavailable(f"SystemRoot {system_root!r} has no drive letter")
        return drive.upper() + "\\"

    # 別紙5 (5)
    def volume_serial(self) -> JsonValue:
        """Serial of the volume Windows runs from (GetVolumeInformationW), in ``vol``'s XXXX-XXXX form."""
        root = self._system_root()
        try:
            serial = self._volumes.volume_serial(root)
        except OSError as exc:
            raise ItemUnavailable(f"GetVolumeInformationW({root}) failed: {exc}") from exc
        return {"volume": root, "serial": format_volume_serial(serial), "kind": "volume_serial"}

    # 別紙5 (6)
    def volume_free(self) -> JsonValue:
        """Bytes free to this user on the system volume (GetDiskFreeSpaceExW, quota-aware)."""
        root = self._system_root()
        try:
            free = self._volumes.free_bytes(root)
        except OSError as exc:
            raise ItemUnavailable(f"GetDiskFreeSpaceExW({root}) failed: {exc}") from exc
        return {"volume": root, "free_bytes": int(free)}

    # 別紙5 (7)
    def default_browser(self) -> JsonValue:
        r"""The https (else http) UserChoice ProgId, i.e. what Settings > Default apps set for web links."""
        for scheme in ("https", "http"):
            prog_id = self._str(rf"{URL_ASSOC}\{scheme}\UserChoice", "ProgId")
            if prog_id:
                return self._describe_prog_id(prog_id)
        raise ItemUnavailable("no UserChoice for https or http: the user never chose a default browser")

    # 別紙5 (8)
    def default_mail(self) -> JsonValue:
        r"""The mailto UserChoice ProgId; else the legacy ``Clients\Mail`` default (Outlook-era
        installers)."""
        prog_id = self._str(rf"{URL_ASSOC}\mailto\UserChoice", "ProgId")
        if prog_id:
            return self._describe_prog_id(prog_id)
        for hive in ("HKEY_CURRENT_USER", "HKEY_LOCAL_MACHINE"):
            client = self._str(rf"{hive}\SOFTWARE\Clients\Mail", "")
            if client:
                command = self._str(
                    rf"HKEY_LOCAL_MACHINE\SOFTWARE\Clients\Mail\{client}\shell\open\command", ""
                )
                return self._describe(client, client, command)
        raise ItemUnavailable(r"no UserChoice for mailto and no default under SOFTWARE\Clients\Mail")

    def _describe_prog_id(self, prog_id: str) -> JsonValue:
        name = self._str(rf"{CLASSES}\{prog_id}\Application", "ApplicationName")
        command = self._str(rf"{CLASSES}\{prog_id}\shell\open\command", "")
        return self._describe(prog_id, name, command)

    def _describe(self, app_id: str, name: str | None, command: str | None) -> JsonValue:
        exe = exe_from_command(command) if command else None
        if name is not None and name.startswith("@"):
            name = (
                None  # indirect resource string (packaged apps); not resolvable without SHLoadIndirectString
            )
        if name is None and exe is not None:
            name = ntpath.splitext(ntpath.basename(exe))[0]
        value: dict[str, str | None] = {"id": app_id, "name": name, "version": None}
        if exe is None:
            value["version_reason"] = f"no shell\\open\\command for {app_id}"
            return value
        try:
            version = self._file_version(exe)
        except OSError as exc:
            version = None
            value["version_reason"] = f"cannot read the version resource of {exe}: {exc}"
        if version:
            value["version"] = version
            value["version_source"] = f"file version of {exe}"
        else:
            value.setdefault("version_reason", f"{exe} has no version resource")
        return value

    # 別紙5 (9)
    def cpu(self) -> JsonValue:
        """ProcessorNameString and the firmware-reported rated clock ``~MHz`` of CPU 0."""
        model = self._str(CPU0, "ProcessorNameString")
        if model is None:
            raise ItemUnavailable(rf"{CPU0}\ProcessorNameString is missing")
        mhz = self._int(CPU0, "~MHz")
        value: dict[str, str | int | None] = {"model": " ".join(model.split()), "mhz": mhz}
        if mhz is None:
            value["mhz_reason"] = rf"{CPU0}\~MHz is missing"
        else:
            value["mhz_kind"] = "rated"
        return value

    # 別紙5 (10)
    def memory(self) -> JsonValue:
        """Physical memory usable by Windows (GlobalMemoryStatusEx ullTotalPhys, via psutil)."""
        return {"total_bytes": int(self._memory_total())}


if sys.platform == "win32":  # pragma: no cover - real implementations, exercised only on Windows
    import ctypes
    import winreg
    from ctypes import wintypes

    __all__ += ["Win32VolumeInfoReader", "WinRegReader", "default_windows_collector", "win32_file_version"]

    _ROOTS = {
        "HKEY_LOCAL_MACHINE": winreg.HKEY_LOCAL_MACHINE,
        "HKEY_CURRENT_USER": winreg.HKEY_CURRENT_USER,
        "HKEY_CLASSES_ROOT": winreg.HKEY_CLASSES_ROOT,
        "HKEY_USERS": winreg.HKEY_USERS,
    }

    class WinRegReader:
        """RegistryReader on ``winreg``, read-only, 64-bit view (the OS's own values, not WOW6432Node)."""

        def read_value(self, key: str, name: str) -> RegValue | None:
            hive, _, path = normalize_key(key).partition("\\")
            root = _ROOTS.get(hive)
            if root is None:
                return None
            try:
                with winreg.OpenKey(root, path, 0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY) as handle:
                    value, _kind = winreg.QueryValueEx(handle, name)
            except OSError:
                return None
            if isinstance(value, str | int | bytes):
                return value
            if isinstance(value, list):
                return [str(v) for v in value]
            return None

    class Win32VolumeInfoReader:
        """VolumeInfoReader on kernel32."""

        def volume_serial(self, root: str) -> int:
            serial = wintypes.DWORD()
            ok = ctypes.windll.kernel32.GetVolumeInformationW(
                ctypes.c_wchar_p(root), None, 0, ctypes.byref(serial), None, None, None, 0
            )
            if not ok:
                raise ctypes.WinError()
            return int(serial.value)

        def free_bytes(self, root: str) -> int:
            free = ctypes.c_ulonglong()
            ok = ctypes.windll.kernel32.GetDiskFreeSpaceExW(
                ctypes.c_wchar_p(root), ctypes.byref(free), None, None
            )
            if not ok:
                raise ctypes.WinError()
            return int(free.value)

    class _FixedFileInfo(ctypes.Structure):
        _fields_ = [
            ("dwSignature", wintypes.DWORD),
            ("dwStrucVersion", wintypes.DWORD),
            ("dwFileVersionMS", wintypes.DWORD),
            ("dwFileVersionLS", wintypes.DWORD),
            ("dwProductVersionMS", wintypes.DWORD),
            ("dwProductVersionLS", wintypes.DWORD),
        ]

    def win32_file_version(path: str) -> str | None:
        """Product version from the executable's VS_FIXEDFILEINFO (what Explorer's Details tab shows)."""
        version_dll = ctypes.windll.version
        size = version_dll.GetFileVersionInfoSizeW(ctypes.c_wchar_p(path), None)
        if not size:
            return None
        buffer = ctypes.create_string_buffer(size)
        if not version_dll.GetFileVersionInfoW(ctypes.c_wchar_p(path), 0, size, buffer):
            return None
        pointer = ctypes.c_void_p()
        length = wintypes.UINT()
        if not version_dll.VerQueryValueW(
            buffer, ctypes.c_wchar_p("\\"), ctypes.byref(pointer), ctypes.byref(length)
        ):
            return None
        info = ctypes.cast(pointer, ctypes.POINTER(_FixedFileInfo)).contents
        ms, ls = info.dwProductVersionMS, info.dwProductVersionLS
        return f"{ms >> 16}.{ms & 0xFFFF}.{ls >> 16}.{ls & 0xFFFF}"

    def default_windows_collector() -> WindowsCollector:
        """The collector wired to the real Windows APIs."""
        return WindowsCollector(
            registry=WinRegReader(), volumes=Win32VolumeInfoReader(), file_version=win32_file_version
        )
