"""Hypothesis profiles for the property-based fuzz tests (docs/hardening.md).

``ci`` (the default): 200 examples per property, no deadline (the 2-core CI machine is shared), a
few seconds per decoder. ``long``: 20,000 examples each, for a run before a release or after a change
to a decoder: ``HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests -k fuzz``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
settings.register_profile(
    "long", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
