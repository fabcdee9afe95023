"""Fixtures for the ``certs`` tests: a fixed clock and a CA made once per test.

Time is an argument everywhere in ``certs``, so tests pass ``NOW`` instead of sleeping or patching.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from certs import CertificateAuthority

NOW = datetime(2025, 4, 1, 9, 30, tzinfo=UTC)
"""Whole seconds: X.509 times have second precision, so equality checks stay exact."""


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def ca(now: datetime) -> CertificateAuthority:
    return CertificateAuthority.create(common_name="ISP Remote Support Test CA", now=now)


@pytest.fixture
def other_ca(now: datetime) -> CertificateAuthority:
    """A foreign CA, for checks that must fail."""
    return CertificateAuthority.create(common_name="Someone Else's CA", now=now)
