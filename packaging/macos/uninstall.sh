#!/bin/sh
# Remove the agent from a Mac: the LaunchDaemon, the LaunchAgent, the logs and the app.
# The subscriber's enrollment stays unless --purge-data is given (their choice).
set -e
agent="/Applications/ISP Remote Support.app/Contents/MacOS/isp-agent"
if [ -x "$agent" ]; then
    sudo "$agent" service uninstall ${1:+"$1"} --user "$(stat -f %Su /dev/console)"
fi
sudo rm -rf "/Applications/ISP Remote Support.app"
sudo pkgutil --forget jp.example.isp-remote-support 2>/dev/null || true
