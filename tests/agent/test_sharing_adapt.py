"""Frame rate follows the viewer: the broker's "behind" signal slows the sharer down at once; a
measured round trip that stays short wins the rate back, a step a second; a slow one does not."""

from __future__ import annotations

from agent.sharing import ScreenSharer, TestPatternSource


async def _nothing(_data: bytes) -> None:
    return None


async def test_behind_slows_down_and_short_round_trips_recover() -> None:
    rtt: list[float | None] = [None]
    sharer = ScreenSharer(TestPatternSource(), _nothing, rtt=lambda: rtt[0])
    full_speed = sharer.pipeline.frame_interval
    sharer.refresh(behind=True)
    slowed = sharer.pipeline.frame_interval
    assert slowed > full_speed

    sharer._adapt(100.0)  # no round trip measured yet: nothing changes
    assert sharer.pipeline.frame_interval == slowed
    rtt[0] = 0.002
    sharer._adapt(101.0)
    recovered = sharer.pipeline.frame_interval
    assert recovered < slowed
    sharer._adapt(101.5)  # at most once a second
    assert sharer.pipeline.frame_interval == recovered
    rtt[0] = 2.0  # a slow link holds the rate where it is
    sharer._adapt(103.0)
    assert sharer.pipeline.frame_interval == recovered
