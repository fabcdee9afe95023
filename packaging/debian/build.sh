#!/usr/bin/env bash
# Build isp-remote-support-agent_<version>_<arch>.deb from this repository with dpkg-deb.
#
#   packaging/debian/build.sh [--out DIR] [--wheel PATH]     (or scripts/build-deb)
#
# What the package holds (docs/install.md explains the choice):
#   /opt/isp-remote-support/lib/     the agent's wheel and its dependencies ([agent] extra), installed
#                                    with pip --target for Debian's own python3 (3.11 in bookworm),
#                                    byte-compiled at build time (so nothing unowned appears later)
#   /usr/bin/isp-agent, isp-agent-desktop   launchers: /usr/bin/python3 -IS with that lib first
#   /usr/lib/systemd/system/isp-remote-support-agent@.service   (agent/service/linux.py renders it)
#   /etc/xdg/autostart/isp-remote-support.desktop               the desktop app at login (conffile)
#   /usr/share/applications/isp-remote-support.desktop          the menu entry
#   /usr/share/doc/isp-remote-support-agent/                    install.md, copyright
# Needs: python3, python3-venv, dpkg-deb; pip reaches its index or cache as configured.
# DEB_COMPRESS=xz|gzip|none (default xz; the tests use gzip for speed).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$repo/dist"
wheel=""
while (($#)); do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --wheel) wheel="$2"; shift 2 ;;
        *) echo "usage: $0 [--out DIR] [--wheel PATH]" >&2; exit 2 ;;
    esac
done
python=/usr/bin/python3
package=isp-remote-support-agent
prefix=/opt/isp-remote-support
arch="$(dpkg --print-architecture)"
pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
pynext="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1] + 1}")')"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if [[ -z "$wheel" ]]; then
    # The wheel from a clean copy of the sources (never writes build output into the repository).
    mkdir "$work/src"
    (cd "$repo" && tar --exclude=.venv --exclude=.git --exclude='__pycache__' --exclude=build \
        --exclude=dist --exclude='*.egg-info' --exclude=screenshots -cf - .) | tar -C "$work/src" -xf -
    builder="${BUILD_PYTHON:-$repo/.venv/bin/python}"
    "$builder" -m build --wheel --outdir "$work/wheel" "$work/src" >"$work/build.log" 2>&1 \
        || { cat "$work/build.log" >&2; exit 1; }
    wheel="$(ls "$work"/wheel/*.whl)"
fi
version="$(basename "$wheel" | cut -d- -f2)"

root="$work/root"
lib="$root$prefix/lib"
mkdir -p "$lib" "$root/usr/bin" "$root/DEBIAN"
"$python" -m venv "$work/pip"   # only for its pip, which installs for Debian's interpreter
"$work/pip/bin/python" -m pip install -q --no-compile --target "$lib" "$wheel[agent]"
rm -rf "$lib/bin"                 # pip --target's copies of console scripts: ours are below
"$python" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$lib" >/dev/null

for pair in "isp-agent:agent.__main__" "isp-agent-desktop:agent.desktop"; do
    name="${pair%%:*}"; module="${pair#*:}"
    cat >"$root/usr/bin/$name" <<LAUNCHER
#!$python -IS
# $package launcher: Debian's python3, isolated (-I), with the package's own library first.
import sys
sys.path.insert(0, "$prefix/lib")
from $module import main
sys.exit(main())
LAUNCHER
    chmod 0755 "$root/usr/bin/$name"
done

# The unit and desktop entries, rendered by the same code as `isp-agent service install`.
"$python" -IS - "$lib" "$root" <<'RENDER'
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from agent.service import linux
from agent.service.model import Layout
root = Path(sys.argv[2])
layout = Layout(user="%i", agent=("/usr/bin/isp-agent",), desktop=("/usr/bin/isp-agent-desktop", "--autostart"))
menu = Layout(user="%i", agent=layout.agent, desktop=("/usr/bin/isp-agent-desktop",))
files = {
    linux.PACKAGE_UNIT_DIR / linux.UNIT_TEMPLATE: linux.unit_text(layout),
    linux.PACKAGE_AUTOSTART: linux.desktop_entry(layout),
    Path("usr/share/applications/isp-remote-support.desktop"): linux.desktop_entry(menu),
}
for rel, text in files.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
RENDER

doc="$root/usr/share/doc/$package"
mkdir -p "$doc"
cp "$repo/docs/install.md" "$doc/install.md"
cat >"$doc/copyright" <<EOF2
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: isp-remote-support
Comment: The agent and the third-party Python packages under $prefix/lib keep their own
 licences; see each package's *.dist-info directory there.
EOF2

installed_size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat >"$root/DEBIAN/control" <<EOF2
Package: $package
Version: $version
Architecture: $arch
Maintainer: ISP Helpdesk <helpdesk@example.jp>
Installed-Size: $installed_size
Depends: python3 (>= $pyver), python3 (<< $pynext), python3-tk
Section: net
Priority: optional
Homepage: https://github.com/example/isp-remote-support
Description: consent-first remote-support agent of the ISP helpdesk
 Connects this PC to the ISP's remote-support broker (outbound WSS only). The helpdesk sees or
 controls nothing without the subscriber's consent on screen (Art. 31(1)(iv) of the terms).
 Enable the always-connected service for the subscriber with:
   sudo isp-agent service install --user NAME
EOF2
echo "/etc/xdg/autostart/isp-remote-support.desktop" >"$root/DEBIAN/conffiles"
cat >"$root/DEBIAN/postinst" <<'EOF2'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
EOF2
cat >"$root/DEBIAN/prerm" <<'EOF2'
#!/bin/sh
# Stop and disable every subscriber's instance before the unit goes; enrollments stay in the homes.
set -e
if [ "$1" = remove ] || [ "$1" = deconfigure ]; then
    /usr/bin/isp-agent service uninstall --package >/dev/null 2>&1 || true
fi
exit 0
EOF2
cat >"$root/DEBIAN/postrm" <<EOF2
#!/bin/sh
set -e
if [ "\$1" = remove ] || [ "\$1" = purge ]; then
    # Bytecode Python may still have written (e.g. a newer interpreter): not dpkg's files.
    find $prefix -depth -name __pycache__ -type d -exec rm -rf {} + 2>/dev/null || true
    rmdir --ignore-fail-on-non-empty $prefix/lib $prefix 2>/dev/null || true
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
exit 0
EOF2
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

deb="$out/${package}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
