"""Reconnect delays: exponential with full jitter, so 10,000 agents do not return in lockstep
after a broker restart (the "thundering herd"; AWS Architecture Blog, "Exponential Backoff And
Jitter", full-jitter variant). Pure: the random source is passed in."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True, kw_only=True)
class Backoff:
    """``next_delay()`` grows ``initial * factor**n`` up to ``maximum``; the delay drawn is uniform
    in [minimum, that ceiling]. ``reset()`` after a connection that stayed up."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 60.0
    minimum: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def ceiling(self) -> float:
        return min(self.maximum, self.initial * self.factor**self.attempts)

    def next_delay(self) -> float:
        ceiling = self.ceiling()
        self.attempts += 1
        return self.rng.uniform(min(self.minimum, ceiling), ceiling)

    def reset(self) -> None:
        self.attempts = 0
