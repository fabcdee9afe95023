"""The desktop tests' broker (as the end-to-end tests': open around the clock, a 20 s consent timeout)
and a private Xvfb screen."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import broker  # noqa: F401  (the same broker fixture, not a copy)
from tests.x11 import xvfb


@pytest.fixture
def display() -> Iterator[str]:
    with xvfb(1024, 768) as name:
        yield name
