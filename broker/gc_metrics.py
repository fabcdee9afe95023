"""Time the broker process spends in Python's cyclic garbage collector, on ``/metrics``.

A broker holds tens of thousands of connections, each a few dozen objects the collector tracks; a
full collection walks all of them while the event loop waits. In a reconnect storm the profiles
showed a third to a half of a broker's samples in functions that do nothing but allocate (where a
collection runs), so the time is worth watching in production (docs/PERFORMANCE.md).

``gc.callbacks`` is process-wide: one timer is installed once per process (:func:`install`) and
every registry reads it (:class:`GcCollector`).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

GENERATIONS = (0, 1, 2)


class _Timer:
    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = int(info.get("generation", 0))
        if generation not in GENERATIONS:
            return
        took = time.perf_counter() - self._started
        self.seconds[generation] += took
        self.collections[generation] += 1
        self.longest[generation] = max(self.longest[generation], took)


_timer: _Timer | None = None


def install() -> _Timer:
    """The process's one collection timer (installed on the first call)."""
    global _timer
    if _timer is None:
        _timer = _Timer()
        gc.callbacks.append(_timer)
    return _timer


class GcCollector(Collector):
    """``broker_gc_seconds_total{generation}``, ``broker_gc_collections_total{generation}`` and
    ``broker_gc_longest_seconds{generation}`` (the longest single collection since start)."""

    def __init__(self) -> None:
        self.timer = install()

    def collect(self) -> Iterator[Metric]:
        t = self.timer
        seconds = CounterMetricFamily(
            "broker_gc_seconds", "Time in Python's cyclic garbage collector", labels=["generation"]
        )
        count = CounterMetricFamily(
            "broker_gc_collections", "Collections of Python's cyclic garbage collector", labels=["generation"]
        )
        longest = GaugeMetricFamily(
            "broker_gc_longest_seconds", "The longest single collection since start", labels=["generation"]
        )
        for g in GENERATIONS:
            seconds.add_metric([str(g)], t.seconds[g])
            count.add_metric([str(g)], t.collections[g])
            longest.add_metric([str(g)], t.longest[g])
        yield seconds
        yield count
        yield longest
