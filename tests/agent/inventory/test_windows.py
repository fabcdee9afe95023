"""Windows collector against recorded ``reg query`` / Get-NetAdapter output (別紙5 (1), (3)–(10))."""

from __future__ import annotations

import pytest

from agent.inventory.commands import CommandError
from agent.inventory.model import ItemUnavailable
from agent.inventory.windows import (
    GET_PHYSICAL_ADAPTERS,
    WindowsCollector,
    exe_from_command,
    format_volume_serial,
    normalize_key,
)

from .fakes import FakeVolumes, RegQueryFixture, ScriptedRunner, file_versions, fixture_text

CHROME = r"C:\Program Files\Google\Chrome\Application\chrome.exe"
OUTLOOK = r"C:\Program Files\Microsoft Office\Root\Office16\OUTLOOK.EXE"
FIREFOX = r"C:\Program Files\Mozilla Firefox\firefox.exe"
THUNDERBIRD = r"C:\Program Files\Mozilla Thunderbird\thunderbird.exe"


def win11(runner: ScriptedRunner | None = None) -> WindowsCollector:
    return WindowsCollector(
        registry=RegQueryFixture(fixture_text("windows", "win11_chrome_outlook.reg.txt")),
        volumes=FakeVolumes({"C:\\": 0x5A3C_91E2}, {"C:\\": 123_456_789_012}),
        file_version=file_versions({CHROME: "124.0.6367.91", OUTLOOK: "16.0.17425.20176"}),
        runner=runner
        or ScriptedRunner({GET_PHYSICAL_ADAPTERS: fixture_text("windows", "get_netadapter_physical.json")}),
        memory_total=lambda: 17_007_542_272,
    )


def win10() -> WindowsCollector:
    return WindowsCollector(
        registry=RegQueryFixture(fixture_text("windows", "win10_firefox_thunderbird.reg.txt")),
        volumes=FakeVolumes({"D:\\": 0x0000_00FF}, {"D:\\": 42}),
        file_version=file_versions({FIREFOX: "125.0.3.8872"}),
        runner=ScriptedRunner(
            {GET_PHYSICAL_ADAPTERS: fixture_text("windows", "get_netadapter_physical_single.json")}
        ),
        memory_total=lambda: 8_000_000_000,
    )


def test_os_info_corrects_windows_11_product_name_from_build() -> None:
    assert win11().os_info() == {
        "family": "windows",
        "name": "Windows 11 Pro",
        "version": "23H2",
        "build": "22631.3252",
        "arch": "AMD64",
    }


def test_os_info_windows_10_keeps_name() -> None:
    assert win10().os_info() == {
        "family": "windows",
        "name": "Windows 10 Home",
        "version": "22H2",
        "build": "19045.3934",
    }


def test_machine_name() -> None:
    assert win11().machine_name() == "DESKTOP-7KQ2M4N"
    assert win10().machine_name() == "YAMADA-PC"


def test_mac_addresses_from_get_netadapter_physical() -> None:
    assert win11().mac_addresses() == [
        {"interface": "Ethernet", "mac": "9c:7b:ef:12:34:56"},
        {"interface": "Wi-Fi", "mac": "f4:26:79:3a:b1:c2"},
    ]


def test_mac_addresses_single_adapter_is_unwrapped_object() -> None:
    assert win10().mac_addresses() == [{"interface": "Ethernet", "mac": "04:d4:c4:aa:bb:cc"}]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("", "no physical network adapter"),
        ("\r\n", "no physical network adapter"),
        ("Get-NetAdapter : Access denied", "not JSON"),
        (CommandError("powershell not found"), "powershell not found"),
        ('[{"Name":"Ethernet","MacAddress":""}]', "no adapter with a MAC"),
    ],
)
def test_mac_addresses_unavailable(answer: str | CommandError, reason: str) -> None:
    collector = win11(ScriptedRunner({GET_PHYSICAL_ADAPTERS: answer}))
    with pytest.raises(ItemUnavailable, match=reason):
        collector.mac_addresses()


def test_volume_serial_of_system_drive_in_vol_format() -> None:
    assert win11().volume_serial() == {"volume": "C:\\", "serial": "5A3C-91E2", "kind": "volume_serial"}
    # SystemRoot on D: -> the D: volume is asked, not C:
    assert win10().volume_serial() == {"volume": "D:\\", "serial": "0000-00FF", "kind": "volume_serial"}


def test_volume_free() -> None:
    assert win11().volume_free() == {"volume": "C:\\", "free_bytes": 123_456_789_012}


def test_volume_errors_become_unavailable() -> None:
    collector = WindowsCollector(
        registry=RegQueryFixture(fixture_text("windows", "win11_chrome_outlook.reg.txt")),
        volumes=FakeVolumes({}, {}),
        file_version=file_versions({}),
    )
    with pytest.raises(ItemUnavailable, match=r"GetVolumeInformationW\(C:\\\) failed"):
        collector.volume_serial()
    with pytest.raises(ItemUnavailable, match="GetDiskFreeSpaceExW"):
        collector.volume_free()


def test_default_browser_from_userchoice() -> None:
    assert win11().default_browser() == {
        "id": "ChromeHTML",
        "name": "Google Chrome",
        "version": "124.0.6367.91",
        "version_source": f"file version of {CHROME}",
    }


def test_default_browser_http_fallback_and_exe_name() -> None:
    assert win10().default_browser() == {
        "id": "FirefoxURL-308046B0AF4A39CB",
        "name": "firefox",
        "version": "125.0.3.8872",
        "version_source": f"file version of {FIREFOX}",
    }


def test_default_mail_from_userchoice() -> None:
    assert win11().default_mail() == {
        "id": "Outlook.URL.mailto.15",
        "name": "OUTLOOK",
        "version": "16.0.17425.20176",
        "version_source": f"file version of {OUTLOOK}",
    }


def test_default_mail_from_clients_mail_without_version_resource() -> None:
    assert win10().default_mail() == {
        "id": "Mozilla Thunderbird",
        "name": "Mozilla Thunderbird",
        "version": None,
        "version_reason": f"{THUNDERBIRD} has no version resource",
    }


def test_default_apps_unavailable_without_userchoice() -> None:
    collector = WindowsCollector(
        registry=RegQueryFixture(""), volumes=FakeVolumes({}, {}), file_version=file_versions({})
    )
    with pytest.raises(ItemUnavailable, match="never chose a default browser"):
        collector.default_browser()
    with pytest.raises(ItemUnavailable, match="mailto"):
        collector.default_mail()
    with pytest.raises(ItemUnavailable, match="ProductName"):
        collector.os_info()
    with pytest.raises(ItemUnavailable, match="ProcessorNameString"):
        collector.cpu()


def test_cpu_and_memory() -> None:
    assert win11().cpu() == {
        "model": "11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz",
        "mhz": 2800,
        "mhz_kind": "rated",
    }
    assert win10().cpu() == {
        "model": "AMD Ryzen 5 3500U with Radeon Vega Mobile Gfx",
        "mhz": None,
        "mhz_reason": r"HKEY_LOCAL_MACHINE\HARDWARE\DESCRIPTION\System\CentralProcessor\0\~MHz is missing",
    }
    assert win11().memory() == {"total_bytes": 17_007_542_272}


def test_helpers() -> None:
    assert format_volume_serial(0x5A3C91E2) == "5A3C-91E2"
    assert format_volume_serial(0) == "0000-0000"
    assert normalize_key("HKLM\\Software\\X\\") == "HKEY_LOCAL_MACHINE\\Software\\X"
    assert normalize_key("hkcu/Software") == "HKEY_CURRENT_USER\\Software"
    assert exe_from_command('"C:\\A B\\c.exe" --x "%1"') == "C:\\A B\\c.exe"
    assert exe_from_command("C:\\Windows\\notepad.exe %1") == "C:\\Windows\\notepad.exe"
    assert exe_from_command('"unterminated') is None
