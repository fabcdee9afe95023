#!/usr/bin/env bash
# Build the agent's macOS installer (.pkg) with PyInstaller and pkgbuild. Runs on macOS only
# (CI: macos-latest in .github/workflows/agent-packages.yml); not verified on the Linux machine.
#
#   packaging/macos/build-pkg.sh [--out DIR]
#
# Payload: /Applications/ISP Remote Support.app (isp-agent-desktop and isp-agent in Contents/MacOS).
# postinstall: `isp-agent service install --user <console user>` writes and loads the LaunchDaemon
# (agent run as the subscriber, from boot) and the LaunchAgent (the window at login), the same plists
# agent/service/macos.py renders and tests/packaging/test_service.py checks.
# Uninstall: packaging/macos/uninstall.sh (macOS has no package removal of its own).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$repo/dist"
[[ "${1:-}" == "--out" ]] && out="$2"
[[ "$(uname)" == Darwin ]] || { echo "macOS only" >&2; exit 2; }
version="$(python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$repo/pyproject.toml")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m pyinstaller --version >/dev/null 2>&1 || python3 -m pip install -q "pyinstaller>=6.0"
python3 -m PyInstaller --noconfirm --workpath "$work/build" --distpath "$work/dist" \
    "$repo/packaging/pyinstaller/isp-agent.spec"
mkdir -p "$work/payload/Applications" "$work/scripts" "$out"
cp -R "$work/dist/ISP Remote Support.app" "$work/payload/Applications/"
cp "$here/postinstall" "$here/preinstall" "$work/scripts/"
chmod 0755 "$work/scripts/"*
pkgbuild --root "$work/payload" --scripts "$work/scripts" \
    --identifier jp.example.isp-remote-support --version "$version" \
    --install-location / "$out/isp-remote-support-agent-$version.pkg"
echo "$out/isp-remote-support-agent-$version.pkg"
