"""Frozen ``isp-agent``: the same entry point as the ``isp-agent`` console script."""

import sys

from agent.__main__ import main

sys.exit(main())
