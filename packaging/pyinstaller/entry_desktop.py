"""Frozen ``isp-agent-desktop``: the subscriber's window."""

import sys

from agent.desktop import main

sys.exit(main())
