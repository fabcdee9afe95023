"""What a benchmark run measures and how much: the ``full``, ``quick`` and ``smoke`` plans, and the
broker settings they compare.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.common import KiB
from broker import tuning

AGENTS_PER_PROCESS = 2500
"""Simulated agents per load process (the open-file limit is 20,000 per process)."""


STOCK = 0
"""``--tls-read-buffer 0``: asyncio's own 256 KiB."""


TUNED = tuning.DEFAULT_TLS_READ_BUFFER
"""The broker's TLS read buffer for idle connections, as shipped (2 KiB)."""


NO_GROWTH = ("--session-read-buffer", "0")
"""Keep the idle buffer when an agent starts streaming (the broker grows it to 256 KiB)."""


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    idle_counts: tuple[int, ...]
    stock_idle_counts: tuple[int, ...]
    idle_window: float
    tuning_n: int
    storm_deadline: float
    relay_sessions: tuple[int, ...]
    relay_sizes: tuple[int, ...]
    relay_seconds: float
    relay_max_messages: int
    latency_levels: tuple[int, ...]
    latency_seconds: float
    enroll_count: int
    csr_count: int
    frame_pipeline: tuple[str, ...] | None
    profile_seconds: float


PLANS = {
    "full": Plan(
        name="full",
        idle_counts=(1000, 5000, 10000),
        stock_idle_counts=(1000, 5000),
        idle_window=10.0,
        tuning_n=2000,
        storm_deadline=120.0,
        relay_sessions=(1, 50),
        relay_sizes=(16 * KiB, 64 * KiB),
        relay_seconds=4.0,
        relay_max_messages=200_000,
        latency_levels=(0, 50, 200),
        latency_seconds=8.0,
        enroll_count=200,
        csr_count=1000,
        frame_pipeline=("--frames", "40", "--seconds", "5"),
        profile_seconds=6.0,
    ),
    "quick": Plan(
        name="quick",
        idle_counts=(200, 1000),
        stock_idle_counts=(1000,),
        idle_window=4.0,
        tuning_n=500,
        storm_deadline=60.0,
        relay_sessions=(1, 10),
        relay_sizes=(16 * KiB, 64 * KiB),
        relay_seconds=2.0,
        relay_max_messages=50_000,
        latency_levels=(0, 20),
        latency_seconds=3.0,
        enroll_count=40,
        csr_count=200,
        frame_pipeline=("--frames", "10", "--seconds", "2"),
        profile_seconds=3.0,
    ),
    "smoke": Plan(
        name="smoke",
        idle_counts=(20,),
        stock_idle_counts=(),
        idle_window=1.0,
        tuning_n=0,
        storm_deadline=30.0,
        relay_sessions=(1,),
        relay_sizes=(16 * KiB,),
        relay_seconds=2.0,
        relay_max_messages=200,
        latency_levels=(0,),
        latency_seconds=1.0,
        enroll_count=4,
        csr_count=20,
        frame_pipeline=None,
        profile_seconds=0.0,
    ),
}
