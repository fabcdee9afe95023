"""Reconnect backoff: exponential ceiling, capped, full jitter from an injected random source."""

from __future__ import annotations

import random

import pytest

from agent.backoff import Backoff


def test_ceiling_doubles_then_caps() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, maximum=60.0, minimum=0.2, rng=random.Random(1))
    ceilings = []
    for _ in range(9):
        ceilings.append(backoff.ceiling())
        backoff.next_delay()
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_delays_stay_within_minimum_and_ceiling() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, maximum=60.0, minimum=0.2, rng=random.Random(7))
    for _ in range(200):
        ceiling = backoff.ceiling()
        delay = backoff.next_delay()
        assert 0.2 <= delay <= ceiling <= 60.0


def test_minimum_never_exceeds_a_small_ceiling() -> None:
    backoff = Backoff(initial=0.1, factor=2.0, maximum=60.0, minimum=0.2, rng=random.Random(3))
    assert backoff.next_delay() == pytest.approx(0.1)  # ceiling 0.1 < minimum: the ceiling wins
    assert backoff.next_delay() == pytest.approx(0.2)


def test_reset_starts_over() -> None:
    backoff = Backoff(rng=random.Random(5))
    for _ in range(10):
        backoff.next_delay()
    assert backoff.ceiling() == 60.0
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.ceiling() == 1.0
    assert backoff.next_delay() <= 1.0


def test_seeded_rng_gives_jitter() -> None:
    backoff = Backoff(maximum=8.0, rng=random.Random(42))
    for _ in range(5):
        backoff.next_delay()
    delays = [backoff.next_delay() for _ in range(50)]  # all at the 8 s ceiling
    assert len(set(delays)) > 40
    assert min(delays) < 4.0 < max(delays)


def test_same_seed_same_delays() -> None:
    one = Backoff(rng=random.Random(99))
    two = Backoff(rng=random.Random(99))
    assert [one.next_delay() for _ in range(10)] == [two.next_delay() for _ in range(10)]


def test_many_agents_spread_out() -> None:
    """The point of jitter: agents restarted together do not all return together."""
    rng = random.Random(0)
    agents = [Backoff(rng=rng) for _ in range(1000)]
    for agent in agents:
        for _ in range(6):
            agent.next_delay()
    delays = [agent.next_delay() for agent in agents]  # ceiling 60 s for all
    buckets = {int(d // 10) for d in delays}
    assert buckets == {0, 1, 2, 3, 4, 5}
