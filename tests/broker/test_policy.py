"""Policy rules with a fake clock: service hours (別記1), request limits (第18条⑤), code guessing."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from broker.errors import RefusedError
from broker.policy import (
    AuditThrottle,
    CodeAttemptGuard,
    PolicyConfigError,
    RateLimit,
    ServiceHours,
    parse_hours,
)
from protocol.errors import ErrorCode

TOKYO = ZoneInfo("Asia/Tokyo")


def tokyo(month: int, day: int, hour: int, minute: int = 0, second: int = 0, year: int = 2025) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=TOKYO).timestamp()


# -- service hours ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hour", "minute", "second", "is_open"),
    [
        (8, 59, 59, False),
        (9, 0, 0, True),
        (12, 0, 0, True),
        (20, 59, 59, True),
        (21, 0, 0, False),
        (0, 0, 0, False),
    ],
)
def test_default_hours_are_9_to_21_tokyo(hour: int, minute: int, second: int, is_open: bool) -> None:
    assert ServiceHours().is_open(tokyo(11, 24, hour, minute, second)) is is_open


def test_hours_are_tokyo_time_whatever_the_host_zone() -> None:
    # 00:30 UTC is 09:30 in Tokyo
    assert ServiceHours().is_open(datetime(2025, 11, 24, 0, 30, tzinfo=ZoneInfo("UTC")).timestamp())


def test_next_opening() -> None:
    hours = ServiceHours()
    assert hours.next_opening(tokyo(11, 24, 21, 0)) == tokyo(11, 25, 9, 0)
    assert hours.next_opening(tokyo(11, 24, 23, 59)) == tokyo(11, 25, 9, 0)
    assert hours.next_opening(tokyo(11, 25, 0, 30)) == tokyo(11, 25, 9, 0)
    assert hours.next_opening(tokyo(11, 25, 8, 59, 59)) == tokyo(11, 25, 9, 0)
    now = tokyo(11, 25, 10, 0)
    assert hours.next_opening(now) == now  # open: now
    assert hours.next_opening(tokyo(12, 31, 22, 0)) == tokyo(1, 1, 9, 0, year=2026)


def test_closed_message_japanese_and_english() -> None:
    hours = ServiceHours()
    now = tokyo(11, 24, 21, 30)
    assert hours.closed_message(now, "ja") == (
        "受付時間外です。受付時間は 9:00～21:00（年中無休）です。次の受付開始は 11月25日 9:00 です。"
    )
    english = hours.closed_message(now, "en")
    assert "9:00–21:00 every day" in english
    assert "November 25, 9:00" in english
    assert hours.closed_message(now) == hours.closed_message(now, "ja-JP")
    assert "1月1日 9:00" in hours.closed_message(tokyo(12, 31, 21, 0), "ja")


def test_window_that_wraps_midnight() -> None:
    night = ServiceHours(open_at=time(22, 0), close_at=time(6, 0))
    assert night.is_open(tokyo(11, 24, 22, 0))
    assert night.is_open(tokyo(11, 24, 23, 59))
    assert night.is_open(tokyo(11, 25, 0, 0))
    assert night.is_open(tokyo(11, 25, 5, 59, 59))
    assert not night.is_open(tokyo(11, 25, 6, 0))
    assert not night.is_open(tokyo(11, 25, 21, 59))
    assert night.next_opening(tokyo(11, 25, 6, 0)) == tokyo(11, 25, 22, 0)
    assert night.next_opening(tokyo(11, 25, 12, 0)) == tokyo(11, 25, 22, 0)
    assert "22:00～6:00" in night.closed_message(tokyo(11, 25, 12, 0), "ja")


def test_equal_times_mean_always_open() -> None:
    always = parse_hours("00:00-00:00")
    assert always.always_open
    for hour in range(24):
        now = tokyo(11, 24, hour, 17)
        assert always.is_open(now)
        assert always.next_opening(now) == now


def test_parse_hours() -> None:
    assert parse_hours("09:00-21:00") == ServiceHours()
    assert parse_hours("9:00～21:00") == ServiceHours()
    assert parse_hours(" 09:00 – 21:00 ") == ServiceHours()
    late = parse_hours("09:30-24:00", tz="Europe/Berlin")
    assert (late.open_at, late.close_at, late.tz) == (time(9, 30), time(0, 0), "Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    assert late.is_open(datetime(2025, 11, 24, 23, 59, tzinfo=berlin).timestamp())
    assert not late.is_open(datetime(2025, 11, 24, 9, 29, tzinfo=berlin).timestamp())
    for bad in ("", "9-21", "25:00-21:00", "09:60-21:00", "09:00/21:00"):
        with pytest.raises(PolicyConfigError):
            parse_hours(bad)
    with pytest.raises(ValueError, match="time zone"):  # also a ValueError, for config loaders
        parse_hours("09:00-21:00", tz="Mars/Olympus")


def test_next_opening_across_a_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    hours = ServiceHours(tz="Europe/Berlin")
    before = datetime(2025, 3, 29, 22, 0, tzinfo=berlin).timestamp()  # clocks go forward that night
    assert hours.next_opening(before) == datetime(2025, 3, 30, 9, 0, tzinfo=berlin).timestamp()
    assert "(Europe/Berlin)" in hours.closed_message(before, "en")


# -- rate limits and audit throttling -----------------------------------------------------------


def test_request_limit_sliding_hour() -> None:
    limit = RateLimit(limit=5, window=3600)
    t = 1_000_000.0
    for i in range(5):
        assert limit.check("C1", t + i * 60) is None
        limit.record("C1", t + i * 60)
    assert limit.check("C1", t + 300) == pytest.approx(3300)
    assert limit.check("C2", t + 300) is None  # per contract
    assert limit.check("C1", t + 3600) is None  # the first request left the window
    limit.record("C1", t + 3600)
    assert limit.check("C1", t + 3601) == pytest.approx(59)


def test_request_limit_memory_is_bounded() -> None:
    limit = RateLimit(limit=2, window=3600, max_tracked=10)
    for i in range(1000):
        limit.record(f"C{i}", float(i))
    assert len(limit) <= 10
    limit.record("C999", 1000.0)
    assert limit.check("C999", 1000.0) is not None  # the most recent are kept
    assert len(RateLimit(limit=5, window=3600)) == 0


def test_audit_throttle_writes_one_entry_per_interval_with_the_count() -> None:
    throttle = AuditThrottle(interval=60)
    assert throttle.note("agent.refused:1.2.3.4", 0.0) == 1
    assert [throttle.note("agent.refused:1.2.3.4", t) for t in (1.0, 2.0, 59.0)] == [None, None, None]
    assert throttle.note("other", 3.0) == 1  # per key
    assert throttle.note("agent.refused:1.2.3.4", 60.0) == 4  # three held back plus this one


def test_audit_throttle_adds_up_events_that_stand_for_several() -> None:
    """An agent reports refused input with a count (broker/input_refusals.py)."""
    throttle = AuditThrottle(5.0, max_tracked=2)
    assert throttle.note("s1", 100.0, 3) == 3
    assert throttle.note("s1", 101.0, 4) is None
    assert throttle.note("s1", 104.9, 1) is None
    assert throttle.note("s1", 105.0, 2) == 7  # 4 + 1 held back, + 2 now
    assert throttle.note("s2", 105.0, 1) == 1
    assert throttle.note("s3", 105.0, 1) == 1  # bounded: s1 is forgotten
    assert throttle.note("s1", 105.1, 1) == 1


def test_audit_throttle_memory_is_bounded() -> None:
    throttle = AuditThrottle(interval=60, max_tracked=5)
    for i in range(100):
        throttle.note(f"k{i}", float(i))
    assert len(throttle._state) <= 5


# -- support-code claims -----------------------------------------------------------------------------


def refused(call: object) -> RefusedError:
    assert callable(call)
    with pytest.raises(RefusedError) as info:
        call()
    return info.value


def test_per_operator_rate_limit() -> None:
    guard = CodeAttemptGuard()
    for i in range(10):
        guard.check("alice", "192.0.2.1", 100.0 + i)
        guard.success("alice", "192.0.2.1")
    error = refused(lambda: guard.check("alice", "192.0.2.1", 110.0))
    assert error.code is ErrorCode.RATE_LIMITED
    assert error.retry_after == pytest.approx(50.0)
    guard.check("bob", "192.0.2.1", 110.0)  # another operator on the same address is fine
    guard.check("alice", "192.0.2.1", 160.0)  # the first attempt left the minute


def test_per_address_rate_limit() -> None:
    guard = CodeAttemptGuard()
    for op in ("a", "b", "c"):
        for _ in range(10):
            guard.check(op, "203.0.113.9", 500.0)
    error = refused(lambda: guard.check("d", "203.0.113.9", 501.0))
    assert error.code is ErrorCode.RATE_LIMITED
    guard.check("d", "203.0.113.10", 501.0)


def test_ten_wrong_codes_in_a_row_lock_the_operator_out() -> None:
    guard = CodeAttemptGuard()
    now = 0.0
    for _ in range(10):
        now += 7.0  # slower than the rate limit
        guard.check("alice", "192.0.2.1", now)
        guard.failure("alice", "192.0.2.1", now)
    error = refused(lambda: guard.check("alice", "192.0.2.2", now + 1))
    assert error.code is ErrorCode.ACCOUNT_LOCKED
    assert error.retry_after == pytest.approx(899.0)
    assert guard.locked_until("alice", now + 1) == now + 900
    guard.check("bob", "192.0.2.1", now + 1)  # only alice
    guard.check("alice", "192.0.2.1", now + 900)  # lockout expired
    assert guard.locked_until("alice", now + 900) is None
    for i in range(9):  # and the run starts again from zero
        guard.failure("alice", "192.0.2.1", now + 900 + i)
    guard.check("alice", "192.0.2.1", now + 1000)


def test_success_resets_the_run() -> None:
    guard = CodeAttemptGuard(lockout_after=3, max_per_minute_per_operator=100)
    for _ in range(2):
        guard.failure("alice", "a", 1.0)
    guard.success("alice", "a")
    for _ in range(2):
        guard.failure("alice", "a", 2.0)
    guard.check("alice", "a", 3.0)
    guard.failure("alice", "a", 3.0)
    assert refused(lambda: guard.check("alice", "a", 4.0)).code is ErrorCode.ACCOUNT_LOCKED


def test_code_guard_memory_is_bounded() -> None:
    guard = CodeAttemptGuard(max_tracked=5, lockout_after=1, lockout_for=10.0)
    for i in range(200):
        guard.check(f"op{i}", f"addr{i}", float(i))
        guard.failure(f"op{i}", f"addr{i}", float(i))
    assert len(guard._per_operator) <= 5
    assert len(guard._per_address) <= 5
    assert len(guard._locked_until) <= 6
    assert len(guard._consecutive) <= 5
