"""macOS collector against recorded sw_vers / scutil / networksetup / diskutil / sysctl / LaunchServices
output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.inventory.commands import CommandError
from agent.inventory.macos import LAUNCH_SERVICES_PLIST, MacOSCollector, parse_hardware_ports, parse_sw_vers
from agent.inventory.model import ItemUnavailable

from .fakes import FIXTURES, ScriptedRunner, fixture_text

MAC = FIXTURES / "macos"
BREW = ("sysctl", "-n", "machdep.cpu.brand_string")
FREQ = ("sysctl", "-n", "hw.cpufrequency")
UNKNOWN_OID = CommandError("sysctl exited with status 1: sysctl: unknown oid 'hw.cpufrequency'")


def make_home(tmp_path: Path, *, launch_services: bool = True) -> Path:
    home = tmp_path / "home"
    if launch_services:
        target = home / LAUNCH_SERVICES_PLIST
        target.parent.mkdir(parents=True)
        shutil.copy(MAC / "launchservices.secure.plist", target)
    else:
        home.mkdir()
    return home


def make_app(tmp_path: Path) -> Path:
    app = tmp_path / "Applications" / "Google Chrome.app"
    (app / "Contents").mkdir(parents=True)
    shutil.copy(MAC / "chrome_Info.plist", app / "Contents" / "Info.plist")
    return app


def standard_runner(tmp_path: Path, *, apple_silicon: bool = True) -> ScriptedRunner:
    app = make_app(tmp_path)
    return ScriptedRunner(
        {
            ("sw_vers",): fixture_text("macos", "sw_vers.txt"),
            ("scutil", "--get", "ComputerName"): fixture_text("macos", "scutil_computername.txt"),
            ("networksetup", "-listallhardwareports"): fixture_text(
                "macos", "networksetup_listallhardwareports.txt"
            ),
            ("diskutil", "info", "-plist", "/"): fixture_text("macos", "diskutil_info_root.plist"),
            BREW: fixture_text(
                "macos", "sysctl_brand_apple.txt" if apple_silicon else "sysctl_brand_intel.txt"
            ),
            FREQ: UNKNOWN_OID if apple_silicon else fixture_text("macos", "sysctl_cpufrequency_intel.txt"),
            ("sysctl", "-n", "hw.memsize"): fixture_text("macos", "sysctl_memsize.txt"),
            ("mdfind", "kMDItemCFBundleIdentifier == 'com.google.chrome'c"): f"{app}\n",
            ("mdfind", "kMDItemCFBundleIdentifier == 'com.microsoft.outlook'c"): "",
            ("mdfind", "kMDItemCFBundleIdentifier == 'com.apple.safari'c"): "",
        }
    )


def test_os_info(tmp_path: Path) -> None:
    collector = MacOSCollector(runner=standard_runner(tmp_path), home=make_home(tmp_path))
    assert collector.os_info() == {"family": "macos", "name": "macOS", "version": "14.4.1", "build": "23E224"}


def test_machine_name_keeps_unicode(tmp_path: Path) -> None:
    collector = MacOSCollector(runner=standard_runner(tmp_path), home=make_home(tmp_path))
    assert collector.machine_name() == "Yamada\u2019s MacBook Air"


def test_mac_addresses_skip_bridge_and_na(tmp_path: Path) -> None:
    collector = MacOSCollector(runner=standard_runner(tmp_path), home=make_home(tmp_path))
    assert collector.mac_addresses() == [
        {"interface": "en0", "mac": "3c:22:fb:9a:8b:7c"},
        {"interface": "en1", "mac": "36:a1:4e:60:11:00"},
        {"interface": "en4", "mac": "a0:ce:c8:01:02:03"},
    ]


def test_volume_uuid_and_container_free_space(tmp_path: Path) -> None:
    collector = MacOSCollector(runner=standard_runner(tmp_path), home=make_home(tmp_path))
    assert collector.volume_serial() == {
        "volume": "/",
        "serial": "0F5C2A8E-1D3B-4E6F-A7B8-C9D0E1F2A3B4",
        "kind": "volume_uuid",
    }
    assert collector.volume_free() == {"volume": "/", "free_bytes": 187_654_321_152}


def test_default_browser_from_launchservices_with_version(tmp_path: Path) -> None:
    collector = MacOSCollector(runner=standard_runner(tmp_path), home=make_home(tmp_path))
    app = tmp_path / "Applications" / "Google Chrome.app"
    assert collector.default_browser() == {
        "id": "com.google.chrome",
        "name": "Google Chrome",
        "version": "124.0.6367.91",
        "source": "LaunchServices user setting",
        "version_source": f"{app}/Contents/Info.plist",
    }


def test_default_mail_app_not_found_reports_version_reason(tmp_path: Path) -> None:
    collector = MacOSCollector(runner=standard_runner(tmp_path), home=make_home(tmp_path))
    assert collector.default_mail() == {
        "id": "com.microsoft.outlook",
        "name": None,
        "version": None,
        "source": "LaunchServices user setting",
        "version_reason": "Spotlight finds no application with bundle id com.microsoft.outlook",
    }


def test_no_launchservices_entry_means_system_default(tmp_path: Path) -> None:
    collector = MacOSCollector(
        runner=standard_runner(tmp_path), home=make_home(tmp_path, launch_services=False)
    )
    value = collector.default_browser()
    assert isinstance(value, dict)
    assert value["id"] == "com.apple.safari"
    assert value["source"].startswith("macOS system default")


def test_cpu_apple_silicon_has_no_clock(tmp_path: Path) -> None:
    collector = MacOSCollector(runner=standard_runner(tmp_path), home=make_home(tmp_path))
    value = collector.cpu()
    assert isinstance(value, dict)
    assert value["model"] == "Apple M2"
    assert value["mhz"] is None
    assert "Apple silicon" in value["mhz_reason"]


def test_cpu_intel_and_memory(tmp_path: Path) -> None:
    collector = MacOSCollector(
        runner=standard_runner(tmp_path, apple_silicon=False), home=make_home(tmp_path)
    )
    assert collector.cpu() == {
        "model": "Intel(R) Core(TM) i5-8259U CPU @ 2.30GHz",
        "mhz": 2300,
        "mhz_kind": "rated",
    }
    assert collector.memory() == {"total_bytes": 17_179_869_184}


def test_commands_failing_become_unavailable(tmp_path: Path) -> None:
    collector = MacOSCollector(runner=ScriptedRunner({}), home=make_home(tmp_path))
    for method in (
        collector.os_info,
        collector.machine_name,
        collector.mac_addresses,
        collector.volume_serial,
        collector.volume_free,
        collector.cpu,
        collector.memory,
    ):
        with pytest.raises(ItemUnavailable, match="not found"):
            method()


def test_garbage_diskutil_output(tmp_path: Path) -> None:
    runner = ScriptedRunner({("diskutil", "info", "-plist", "/"): "Could not find disk: /\n"})
    collector = MacOSCollector(runner=runner, home=make_home(tmp_path))
    with pytest.raises(ItemUnavailable, match="property list"):
        collector.volume_serial()


def test_parsers() -> None:
    assert parse_sw_vers("ProductName:\tMac OS X\nProductVersion:\t10.15.7\n") == {
        "ProductName": "Mac OS X",
        "ProductVersion": "10.15.7",
    }
    ports = parse_hardware_ports(fixture_text("macos", "networksetup_listallhardwareports.txt"))
    assert [p["Device"] for p in ports] == ["en4", "en0", "bridge0", "en1", "en5"]
