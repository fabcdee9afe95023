"""Linux collector on THIS machine, each value checked against an independent source (別紙5 (1), (3)–(10)).

This runs in a container/VM: some items may legitimately be unreadable here (no filesystem UUID, no mailto
handler). Then the test checks that the collector says "unavailable" for the same reason the independent
source shows, never that it made a value up.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path

import psutil
import pytest

from agent.inventory.commands import CommandError
from agent.inventory.linux import (
    LinuxCollector,
    parse_cpuinfo,
    parse_desktop_entry,
    parse_os_release,
    root_mount,
    upstream_version,
)
from agent.inventory.model import ItemUnavailable

from .fakes import ScriptedRunner

pytestmark = pytest.mark.skipif(not Path("/proc/self/mountinfo").exists(), reason="needs Linux /proc")


def sh(*args: str) -> str | None:
    """Independent source: run a tool directly; None if it is missing or fails."""
    if shutil.which(args[0]) is None:
        return None
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=10, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


@pytest.fixture
def collector() -> LinuxCollector:
    return LinuxCollector()


def test_os_info_matches_os_release_and_uname(collector: LinuxCollector) -> None:
    value = collector.os_info()
    assert isinstance(value, dict)
    release = platform.freedesktop_os_release()
    assert value["family"] == "linux"
    assert value["name"] == release["NAME"]
    assert value.get("version_id") == release.get("VERSION_ID")
    assert value.get("pretty_name") == release.get("PRETTY_NAME")
    assert value["kernel"] == os.uname().release
    assert value["arch"] == os.uname().machine


def test_machine_name_matches_hostname_command(collector: LinuxCollector) -> None:
    expected = sh("hostname") or socket.gethostname()
    assert collector.machine_name() == expected


def physical_macs_from_sysfs() -> dict[str, str]:
    result: dict[str, str] = {}
    for entry in Path("/sys/class/net").iterdir():
        if (entry / "device").exists():
            mac = (entry / "address").read_text().strip().lower()
            if mac.replace(":", "").strip("0"):
                result[entry.name] = mac
    return result


def test_mac_addresses_match_sysfs_physical_interfaces(collector: LinuxCollector) -> None:
    expected = physical_macs_from_sysfs()
    if not expected:
        with pytest.raises(ItemUnavailable, match="no physical network interface"):
            collector.mac_addresses()
        return
    value = collector.mac_addresses()
    assert value == [{"interface": n, "mac": m} for n, m in sorted(expected.items())]
    # and nothing virtual slipped in: loopback, ifb, bridges have no device link
    names = {entry["interface"] for entry in value} if isinstance(value, list) else set()
    assert "lo" not in names


def test_mac_addresses_without_physical_interface(tmp_path: Path) -> None:
    net = tmp_path / "net"
    for name, mac in (("lo", "00:00:00:00:00:00"), ("veth1a2b", "aa:bb:cc:dd:ee:ff")):
        (net / name).mkdir(parents=True)
        (net / name / "address").write_text(mac + "\n")
    with pytest.raises(ItemUnavailable, match=r"no physical network interface.*lo, veth1a2b"):
        LinuxCollector(sys_class_net=net).mac_addresses()


def test_mac_addresses_reads_sysfs_address_when_psutil_lacks_it(tmp_path: Path) -> None:
    net = tmp_path / "net"
    (net / "enp0s99-test").mkdir(parents=True)
    (net / "enp0s99-test" / "device").mkdir()
    (net / "enp0s99-test" / "address").write_text("52:54:00:AB:CD:EF\n")
    assert LinuxCollector(sys_class_net=net).mac_addresses() == [
        {"interface": "enp0s99-test", "mac": "52:54:00:ab:cd:ef"}
    ]


def independent_root_uuid() -> str | None:
    by_uuid = Path("/dev/disk/by-uuid")
    mount = root_mount(Path("/proc/self/mountinfo").read_text())
    assert mount is not None
    if by_uuid.is_dir():
        for entry in by_uuid.iterdir():
            if os.stat(entry).st_rdev == os.makedev(mount.major, mount.minor):
                return entry.name
    return sh("findmnt", "-n", "-o", "UUID", "--mountpoint", "/") or (
        sh("blkid", "-o", "value", "-s", "UUID", mount.source) if mount.source.startswith("/dev/") else None
    )


def test_volume_serial_matches_independent_source(collector: LinuxCollector) -> None:
    expected = independent_root_uuid()
    if expected:
        assert collector.volume_serial() == {"volume": "/", "serial": expected, "kind": "filesystem_uuid"}
    else:
        mount = root_mount(Path("/proc/self/mountinfo").read_text())
        assert mount is not None
        with pytest.raises(ItemUnavailable) as info:
            collector.volume_serial()
        assert mount.fstype in info.value.reason
        assert mount.source in info.value.reason


def test_volume_serial_via_by_uuid_link(tmp_path: Path) -> None:
    mount = root_mount(Path("/proc/self/mountinfo").read_text())
    assert mount is not None
    if not mount.source.startswith("/dev/") or not Path(mount.source).exists():
        pytest.skip("root is not a block device here")
    by_uuid = tmp_path / "by-uuid"
    by_uuid.mkdir()
    (by_uuid / "0a1b2c3d-1111-2222-3333-444455556666").symlink_to(mount.source)
    collector = LinuxCollector(disk_by_uuid=by_uuid, runner=ScriptedRunner({}))
    assert collector.volume_serial() == {
        "volume": "/",
        "serial": "0a1b2c3d-1111-2222-3333-444455556666",
        "kind": "filesystem_uuid",
    }


OVERLAY_MOUNTINFO = (
    "22 1 0:21 / /proc rw - proc proc rw\n"
    "571 480 0:52 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n"
)


def test_volume_serial_overlay_root_is_unavailable(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(OVERLAY_MOUNTINFO)
    runner = ScriptedRunner({})
    with pytest.raises(ItemUnavailable, match=r"overlay.*no filesystem UUID.*container"):
        LinuxCollector(mountinfo_path=mountinfo, runner=runner).volume_serial()
    assert runner.calls == []  # nothing is asked when the answer is known to be "none"


def test_volume_serial_from_findmnt(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("30 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n")
    runner = ScriptedRunner(
        {("findmnt", "-n", "-o", "UUID", "--mountpoint", "/"): "5e3c0f1a-aaaa-bbbb-cccc-0123456789ab\n"}
    )
    collector = LinuxCollector(mountinfo_path=mountinfo, disk_by_uuid=tmp_path / "none", runner=runner)
    value = collector.volume_serial()
    assert value == {
        "volume": "/",
        "serial": "5e3c0f1a-aaaa-bbbb-cccc-0123456789ab",
        "kind": "filesystem_uuid",
    }


def test_volume_free_matches_statvfs(collector: LinuxCollector) -> None:
    st = os.statvfs("/")
    expected = st.f_bavail * st.f_frsize
    value = collector.volume_free()
    assert isinstance(value, dict)
    assert value["volume"] == "/"
    assert abs(value["free_bytes"] - expected) < 256 * 1024 * 1024  # other processes write meanwhile


def xdg(*args: str) -> str | None:
    out = sh("xdg-settings", "get", *args)
    return out.splitlines()[0].strip() if out else None


def check_default_app(value_or_exc: object, desktop_id: str | None) -> None:
    if desktop_id is None:
        assert isinstance(value_or_exc, ItemUnavailable)
        assert "xdg-settings" in value_or_exc.reason
        return
    assert isinstance(value_or_exc, dict), value_or_exc
    assert value_or_exc["id"] == desktop_id
    owner = sh("dpkg-query", "-S", f"/usr/share/applications/{desktop_id}")
    if owner:
        package = owner.split(":", 1)[0]
        version = sh("dpkg-query", "-W", "-f", "${Version}", package)
        assert version is not None
        assert value_or_exc["version"] == upstream_version(version)
        assert version in value_or_exc["version_source"]
    else:
        assert value_or_exc["version"] is not None or value_or_exc["version_reason"]


def outcome(method: object) -> object:
    assert callable(method)
    try:
        return method()
    except ItemUnavailable as exc:
        return exc


def test_default_browser_matches_xdg_settings(collector: LinuxCollector) -> None:
    check_default_app(outcome(collector.default_browser), xdg("default-web-browser"))


def test_default_mail_matches_xdg_settings(collector: LinuxCollector) -> None:
    check_default_app(outcome(collector.default_mail), xdg("default-url-scheme-handler", "mailto"))


def test_default_app_without_xdg_settings() -> None:
    collector = LinuxCollector(runner=ScriptedRunner({}))
    with pytest.raises(ItemUnavailable, match="xdg-settings not found"):
        collector.default_browser()


def test_default_mail_from_desktop_file_and_rpm(tmp_path: Path) -> None:
    apps = tmp_path / "applications"
    apps.mkdir()
    desktop = apps / "org.mozilla.Thunderbird.desktop"
    desktop.write_text("[Desktop Entry]\nName=Thunderbird\nName[ja]=サンダーバード\nExec=thunderbird %u\n")
    runner = ScriptedRunner(
        {
            (
                "xdg-settings",
                "get",
                "default-url-scheme-handler",
                "mailto",
            ): "org.mozilla.Thunderbird.desktop\n",
            ("dpkg-query", "-S", str(desktop)): CommandError("dpkg-query exited with status 1"),
            (
                "rpm",
                "-qf",
                "--qf",
                "%{NAME} %{VERSION}-%{RELEASE}\\n",
                str(desktop),
            ): "thunderbird 115.10.1-1.fc39\n",
        }
    )
    value = LinuxCollector(runner=runner, applications_dirs=[apps]).default_mail()
    assert value == {
        "id": "org.mozilla.Thunderbird.desktop",
        "name": "Thunderbird",
        "version": "115.10.1",
        "version_source": "rpm package thunderbird 115.10.1-1.fc39",
    }


def test_default_browser_unpackaged_reports_version_reason(tmp_path: Path) -> None:
    apps = tmp_path / "applications"
    apps.mkdir()
    (apps / "firefox.desktop").write_text("[Desktop Entry]\nName=Firefox\n")
    runner = ScriptedRunner({("xdg-settings", "get", "default-web-browser"): "firefox.desktop\n"})
    value = LinuxCollector(runner=runner, applications_dirs=[apps]).default_browser()
    assert isinstance(value, dict)
    assert value["name"] == "Firefox"
    assert value["version"] is None
    assert "not owned by a dpkg or rpm package" in value["version_reason"]


def cpuinfo_fields() -> dict[str, str]:
    fields: dict[str, str] = {}
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if ":" in line:
                key, value = line.split(":", 1)
                fields.setdefault(key.strip(), value.strip())
    return fields


def test_cpu_matches_proc_cpuinfo(collector: LinuxCollector) -> None:
    fields = cpuinfo_fields()
    if "model name" not in fields:
        pytest.skip("no 'model name' on this architecture")
    value = collector.cpu()
    assert isinstance(value, dict)
    assert value["model"] == fields["model name"]
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_freq.exists():
        assert value["mhz"] == round(int(max_freq.read_text()) / 1000)
        assert value["mhz_kind"] == "max"
    elif "cpu MHz" in fields:
        assert value["mhz_kind"] == "current"
        assert abs(value["mhz"] - float(fields["cpu MHz"])) <= 0.3 * float(fields["cpu MHz"])
    else:
        assert value["mhz"] is None


def test_memory_matches_meminfo(collector: LinuxCollector) -> None:
    with open("/proc/meminfo", encoding="ascii") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
    assert collector.memory() == {"total_bytes": kib * 1024}
    assert psutil.virtual_memory().total == kib * 1024


def test_parsers() -> None:
    assert parse_os_release('NAME="Debian GNU/Linux"\nVERSION_ID="12"\n# c\nID=debian\nBAD\n') == {
        "NAME": "Debian GNU/Linux",
        "VERSION_ID": "12",
        "ID": "debian",
    }
    assert (
        parse_cpuinfo("processor\t: 0\nHardware\t: BCM2835\nModel\t: Raspberry Pi 4\n")["Model"]
        == "Raspberry Pi 4"
    )
    assert parse_desktop_entry("[Desktop Entry]\nName=A\n[Desktop Action new]\nName=B\n") == {"Name": "A"}
    assert upstream_version("1:115.10.1-1~deb12u1") == "115.10.1"
    assert upstream_version("124.0") == "124.0"
    mount = root_mount(
        "27 1 254:0 / /mnt/with\\040space rw - ext4 /dev/vda rw\n28 1 8:1 / / rw - xfs /dev/sda1 rw\n"
    )
    assert mount is not None
    assert (mount.major, mount.minor, mount.fstype, mount.source) == (8, 1, "xfs", "/dev/sda1")


def test_cpu_without_model(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 108.00\n")
    with pytest.raises(ItemUnavailable, match="names no CPU model"):
        LinuxCollector(cpuinfo_path=cpuinfo, cpufreq_dir=tmp_path).cpu()
