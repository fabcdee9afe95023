"""Policy rules of the service: opening hours, request limits, support-code guessing limits.

Pure objects: every limit is a named constructor argument with a documented default, and time is always
an argument (``now``, seconds since the epoch), never read here (STYLE: "time is an argument"), so the
session manager and the tests drive them with any clock. Memory is bounded: per-key state is pruned as
it ages out, and the number of keys tracked is capped (least recently active dropped first).

- :class:`ServiceHours`: 別記1 "専用受付番号にて9:00～21:00（年中無休）の間、本サービスを提供します".
- :class:`RateLimit`: a sliding-window cap per key, for hostile floods (enrollment attempts and operator
  logins per address) before any expensive work is done.
- :class:`AuditThrottle`: refusals are audited (issue: "every refusal is audited"), but a client that
  repeats the same refused request cannot grow the audit log without bound: one entry per interval,
  carrying how many it stands for.
- :class:`CodeAttemptGuard`: the 6-digit support code (DESIGN §5) has only a million values, so
  claims are rate-limited per operator and per address, and a run of wrong codes locks the operator out.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from datetime import UTC, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocol.errors import ErrorCode

from .errors import BrokerError, RefusedError

__all__ = [
    "AuditThrottle",
    "CodeAttemptGuard",
    "PolicyConfigError",
    "RateLimit",
    "ServiceHours",
    "parse_hours",
]

HOUR: Final = 3600.0
MINUTE: Final = 60.0


class PolicyConfigError(BrokerError, ValueError):
    """A policy setting (hours string, time zone) cannot be understood: a configuration mistake."""

    code = ErrorCode.INVALID_FIELD


# -- service hours (別記1) --------------------------------------------------------------------------


def _hhmm(t: time) -> str:
    """``9:00`` as in the seed's "9:00～21:00" (no leading zero on the hour)."""
    return f"{t.hour}:{t.minute:02d}"


class ServiceHours:
    """A daily opening window in one time zone (別記1: 9:00–21:00, Japan time, every day, 年中無休).

    ``open_at < close_at`` is an ordinary day window; ``open_at > close_at`` wraps midnight (22:00–06:00
    is open in the night); ``open_at == close_at`` means always open (a 24-hour service). The window is
    half-open: open at ``open_at`` exactly, closed at ``close_at`` exactly.
    """

    __slots__ = ("_zone", "close_at", "open_at", "tz")

    def __init__(
        self, open_at: time = time(9, 0), close_at: time = time(21, 0), tz: str = "Asia/Tokyo"
    ) -> None:
        """
        :param open_at: local time the service opens (別記1: 9:00).
        :param close_at: local time it closes (別記1: 21:00); equal to ``open_at`` for always open.
        :param tz: IANA zone the times are in (Japan: ``Asia/Tokyo``; ``tzdata`` supplies it everywhere).
        """
        if open_at.tzinfo is not None or close_at.tzinfo is not None:
            raise PolicyConfigError("service hours are wall-clock times: give the zone as tz")
        try:
            self._zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise PolicyConfigError(f"unknown time zone {tz!r}") from exc
        self.open_at = open_at.replace(second=0, microsecond=0)
        self.close_at = close_at.replace(second=0, microsecond=0)
        self.tz = tz

    def __repr__(self) -> str:
        return f"ServiceHours(open_at={self.open_at!r}, close_at={self.close_at!r}, tz={self.tz!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServiceHours):
            return NotImplemented
        return (self.open_at, self.close_at, self.tz) == (other.open_at, other.close_at, other.tz)

    def __hash__(self) -> int:
        return hash((self.open_at, self.close_at, self.tz))

    @property
    def always_open(self) -> bool:
        return self.open_at == self.close_at

    def _local(self, now: float) -> datetime:
        return datetime.fromtimestamp(now, UTC).astimezone(self._zone)

    def is_open(self, now: float) -> bool:
        if self.always_open:
            return True
        t = self._local(now).time()
        if self.open_at < self.close_at:
            return self.open_at <= t < self.close_at
        return t >= self.open_at or t < self.close_at  # wraps midnight

    def next_opening(self, now: float) -> float:
        """Epoch seconds of the next opening; ``now`` itself while open."""
        if self.is_open(now):
            return now
        today = self._local(now).date()
        for days in range(3):  # closed now, so an opening lies within the next day; 3 covers DST edges
            candidate = datetime.combine(today + timedelta(days=days), self.open_at, tzinfo=self._zone)
            at = candidate.timestamp()
            if at > now:
                return at
        raise AssertionError("unreachable: a daily window opens within two days")  # pragma: no cover

    def describe(self, lang: str = "ja") -> str:
        """The hours as a phrase: "9:00～21:00（年中無休）" / "9:00–21:00 every day"."""
        ja = lang.lower().startswith("ja")
        zone = "" if self.tz == "Asia/Tokyo" else f" ({self.tz})"
        if self.always_open:
            return f"24時間（年中無休）{zone}" if ja else f"24 hours a day, every day{zone}"
        if ja:
            return f"{_hhmm(self.open_at)}～{_hhmm(self.close_at)}（年中無休）{zone}"
        return f"{_hhmm(self.open_at)}–{_hhmm(self.close_at)} every day{zone or ' (Japan time)'}"

    def closed_message(self, now: float, lang: str = "ja") -> str:
        """What a subscriber is told outside the hours (別記1; DESIGN §2: "a clear answer, not a hang").

        Japanese for ``lang`` starting with ``ja``, else English. The next opening is in local time of
        the service's zone.
        """
        nxt = datetime.fromtimestamp(self.next_opening(now), UTC).astimezone(self._zone)
        if lang.lower().startswith("ja"):
            return (
                f"受付時間外です。受付時間は {self.describe('ja')}です。"
                f"次の受付開始は {nxt.month}月{nxt.day}日 {_hhmm(nxt.time())} です。"
            )
        return (
            f"Remote support is closed now. Service hours are {self.describe('en')}. "
            f"Next opening: {nxt.strftime('%B')} {nxt.day}, {_hhmm(nxt.time())}."
        )


_HOURS: Final = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–～~]\s*(\d{1,2}):(\d{2})\s*$")


def parse_hours(text: str, *, tz: str = "Asia/Tokyo") -> ServiceHours:
    """``"09:00-21:00"`` → :class:`ServiceHours`. ``24:00`` is accepted as a closing time (midnight);
    ``"00:00-00:00"`` (or any equal pair) means always open. Separators ``-``, ``–``, ``～``, ``~``."""
    match = _HOURS.match(text)
    if match is None:
        raise PolicyConfigError(f"service hours must look like 09:00-21:00, not {text!r}")
    oh, om, ch, cm = (int(g) for g in match.groups())
    if ch == 24 and cm == 0:
        ch = 0
    if not (0 <= oh < 24 and 0 <= ch < 24 and 0 <= om < 60 and 0 <= cm < 60):
        raise PolicyConfigError(f"service hours out of range: {text!r}")
    return ServiceHours(open_at=time(oh, om), close_at=time(ch, cm), tz=tz)


# -- sliding windows --------------------------------------------------------------------------------


class _SlidingWindows:
    """Timestamps per key within the last ``window`` seconds; at most ``max_keys`` keys.

    Each key keeps at most ``limit`` timestamps (older ones can never matter for a limit of ``limit``),
    so memory is O(max_keys × limit).
    """

    def __init__(self, *, limit: int, window: float, max_keys: int) -> None:
        if limit < 1 or window <= 0 or max_keys < 1:
            raise PolicyConfigError("limits must be positive")
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._hits)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until one more hit fits, or None if it fits now."""
        hits = self._recent(key, now)
        if hits is None or len(hits) < self.limit:
            return None
        return max(0.0, hits[-self.limit] + self.window - now)

    def add(self, key: str, now: float) -> None:
        hits = self._recent(key, now)
        if hits is None:
            hits = self._hits[key] = deque(maxlen=self.limit)
        else:
            self._hits.move_to_end(key)
        hits.append(now)
        if len(self._hits) > self.max_keys:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Drop keys with nothing recent; if still too many, the least recently active ones."""
        for key in list(self._hits):
            self._recent(key, now)
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)

    def clear(self, key: str) -> None:
        self._hits.pop(key, None)


# -- rate limits and audit throttling ----------------------------------------------------------------


class RateLimit:
    """At most ``limit`` events per key in any sliding ``window`` seconds."""

    def __init__(self, limit: int, window: float, *, max_tracked: int = 100_000) -> None:
        """
        :param limit: events allowed per key per ``window``.
        :param window: length of the sliding window in seconds.
        :param max_tracked: keys remembered at once; beyond it the least recently active are forgotten
            (a forgotten key starts afresh, which errs on the side of the client).
        """
        self.limit = limit
        self._windows = _SlidingWindows(limit=limit, window=window, max_keys=max_tracked)

    def __len__(self) -> int:
        return len(self._windows)

    def check(self, key: str, now: float) -> float | None:
        """None if one more event is allowed now, else the seconds until it is."""
        return self._windows.retry_after(key, now)

    def record(self, key: str, now: float) -> None:
        self._windows.add(key, now)


class AuditThrottle:
    """One audit entry per key per ``interval``; the entry says how many events it stands for."""

    def __init__(self, interval: float = 60.0, *, max_tracked: int = 10_000) -> None:
        self.interval = interval
        self.max_tracked = max_tracked
        self._state: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def note(self, key: str, now: float, count: int = 1) -> int | None:
        """Count ``count`` events (one by default); returns the count to write now (those held back
        since the last entry included), or None while the key is throttled."""
        last, pending = self._state.get(key, (float("-inf"), 0))
        pending += count
        if now - last >= self.interval:
            self._state[key] = (now, 0)
            self._state.move_to_end(key)
            while len(self._state) > self.max_tracked:
                self._state.popitem(last=False)
            return pending
        self._state[key] = (last, pending)
        return None


# -- support-code claims (DESIGN §5) -----------------------------------------------------------------


class CodeAttemptGuard:
    """Brute-force limits on claiming a request by its 6-digit support code.

    Use: ``check`` before looking the code up (it raises, or counts the attempt), then ``failure`` or
    ``success``. Three rules:

    - at most ``max_per_minute_per_operator`` claims per operator per minute (RATE_LIMITED);
    - at most ``max_per_minute_per_address`` per client address, so many accounts behind one address do
      not multiply the rate (RATE_LIMITED);
    - ``lockout_after`` wrong codes in a row lock the operator out of claiming by code for ``lockout_for``
      seconds (ACCOUNT_LOCKED); a right code resets the run.
    """

    def __init__(
        self,
        max_per_minute_per_operator: int = 10,
        max_per_minute_per_address: int = 30,
        lockout_after: int = 10,
        lockout_for: float = 900.0,
        *,
        window: float = MINUTE,
        max_tracked: int = 10_000,
    ) -> None:
        """
        :param max_per_minute_per_operator: claims by code per operator per ``window``.
        :param max_per_minute_per_address: claims by code per client address per ``window``.
        :param lockout_after: consecutive wrong codes that lock the operator out.
        :param lockout_for: seconds the lockout lasts (15 minutes).
        :param window: rate window in seconds (one minute).
        :param max_tracked: operators / addresses remembered at once (least recently active dropped).
        """
        if lockout_after < 1 or lockout_for < 0:
            raise PolicyConfigError("lockout_after must be positive and lockout_for not negative")
        self.lockout_after = lockout_after
        self.lockout_for = lockout_for
        self.max_tracked = max_tracked
        self._per_operator = _SlidingWindows(
            limit=max_per_minute_per_operator, window=window, max_keys=max_tracked
        )
        self._per_address = _SlidingWindows(
            limit=max_per_minute_per_address, window=window, max_keys=max_tracked
        )
        self._consecutive: OrderedDict[str, int] = OrderedDict()
        self._locked_until: dict[str, float] = {}

    def check(self, operator: str, address: str, now: float) -> None:
        """Raise if this claim may not be tried now; otherwise count it as one attempt."""
        until = self._locked_until.get(operator)
        if until is not None:
            if now < until:
                raise RefusedError(
                    f"too many wrong support codes in a row: claiming by code is locked for"
                    f" {int(until - now + 0.999)} s",
                    code=ErrorCode.ACCOUNT_LOCKED,
                    retry_after=until - now,
                )
            del self._locked_until[operator]
        for windows, what in ((self._per_operator, operator), (self._per_address, address)):
            wait = windows.retry_after(what, now)
            if wait is not None:
                raise RefusedError(
                    "too many support-code attempts; wait a moment",
                    code=ErrorCode.RATE_LIMITED,
                    retry_after=wait,
                )
        self._per_operator.add(operator, now)
        self._per_address.add(address, now)

    def failure(self, operator: str, address: str, now: float) -> None:
        """A wrong (or expired) code: extend the run; at ``lockout_after`` lock the operator out."""
        count = self._consecutive.pop(operator, 0) + 1
        if count >= self.lockout_after:
            self._locked_until[operator] = now + self.lockout_for
            self._prune_locks(now)
            return
        self._consecutive[operator] = count
        while len(self._consecutive) > self.max_tracked:
            self._consecutive.popitem(last=False)

    def success(self, operator: str, address: str) -> None:
        """A right code ends the run of wrong ones (the rate limits still apply)."""
        self._consecutive.pop(operator, None)

    def locked_until(self, operator: str, now: float) -> float | None:
        until = self._locked_until.get(operator)
        return until if until is not None and now < until else None

    def _prune_locks(self, now: float) -> None:
        if len(self._locked_until) > self.max_tracked:
            for name, until in list(self._locked_until.items()):
                if until <= now:
                    del self._locked_until[name]
            while len(self._locked_until) > self.max_tracked:  # dicts keep insertion order: oldest first
                del self._locked_until[next(iter(self._locked_until))]
