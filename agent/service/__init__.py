"""The agent as installed software: the always-connected ``agent run`` as an OS service, and the
desktop app (``isp-agent-desktop``) started at login.

``agent service install|uninstall|status`` (agent/service/cli.py). Each OS module turns the same
:class:`~agent.service.model.Layout` into data first (unit text, plist bytes, service descriptor,
registry values, command lines) and only then acts, so the Windows and macOS parts are tested as
data on this Linux machine, and the Linux part for real (files, ``systemctl --root``,
``systemd-analyze verify``). Choices and what is verified where: docs/install.md.
"""
