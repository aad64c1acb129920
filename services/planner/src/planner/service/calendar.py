"""Content calendar layout: the post slots of one campaign month, per channel.

Pure functions, no I/O. The rules:

Weekly pattern
    A channel's cadence becomes a weekly pattern of ``(weekday, count)`` (0 = Monday).
    A month takes exactly the days of the pattern that fall inside it, so two consecutive
    months partition the ISO weeks that straddle them: no slot is in both months and none
    is lost. The layout is deterministic, so laying out the same month twice gives the
    same slots; callers use ``(channel, local_date, local_time)`` as the idempotency key.

``per_week`` n
    The pattern days W are the given weekdays (sorted, duplicates dropped) or, when none
    are given, all seven days. Each day of W gets ``n // len(W)`` posts and the
    ``extra = n % len(W)`` remaining posts go to ``W[floor(i * len(W) / extra)]`` for
    ``i in range(extra)``, which spreads them evenly. Without weekdays this means:
    3 -> Mon, Wed, Fri; 2 -> Mon, Thu; 1 -> Mon; 7 -> every day; 10 -> one post every day
    plus a second one on Mon, Wed, Fri. Days left with 0 posts are omitted.

``per_day`` d
    Every day of W (all seven days when no weekdays are given) gets d posts.

Times of a day with k posts
    With preferred times: the first k distinct ones, sorted; fewer than k is a ValueError
    (the API validates earlier; this is a guard, since a missing time would silently drop
    posts). Without: k == 1 -> 10:00; k > 1 -> evenly from 08:00 to 20:00 inclusive,
    ``08:00 + j * 12h / (k - 1)`` rounded down to the minute.

Campaign bounds
    Days outside ``[starts_on, ends_on]`` are skipped; a ``None`` bound is open.

Local wall time -> UTC
    The wall time is read in the brand's zone with PEP 495 ``fold=0``. In a spring-forward
    gap (02:30 on 2027-03-28 in Europe/Madrid does not exist) zoneinfo then applies the
    offset from before the change, which lands one gap later: 03:30 CEST = 01:30Z. In the
    autumn overlap the first occurrence (still summer time) is used. ``local_time`` keeps
    the wall time as laid out, before any gap shift; ``scheduled_at`` is aware, in UTC.

Slots are sorted by ``(scheduled_at, channel)``, ties broken by the wall time (two wall
times can meet at one instant only through a gap shift).
"""

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_WEEK = tuple(range(7))
_SINGLE_POST_AT = time(10, 0)
_FIRST_POST_MINUTE = 8 * 60
_POSTING_SPAN_MINUTES = 12 * 60


@dataclass(frozen=True, slots=True)
class ChannelCadence:
    """How often one channel posts. Exactly one of ``per_week`` / ``per_day`` is set."""

    per_week: int | None = None
    per_day: int | None = None
    weekdays: tuple[int, ...] = ()
    times: tuple[time, ...] = ()

    def __post_init__(self) -> None:
        # Fail at construction, so an impossible cadence never reaches a layout.
        _check_rate(self.per_week, self.per_day)
        _check_weekdays(self.weekdays)
        _check_times(self.times)


@dataclass(frozen=True, slots=True)
class Slot:
    """One post: the wall time asked for in the brand's zone and the instant it goes out."""

    channel: str
    local_date: date
    local_time: time
    scheduled_at: datetime


def _check_rate(per_week: int | None, per_day: int | None) -> None:
    if (per_week is None) == (per_day is None):
        raise ValueError("a cadence sets exactly one of per_week and per_day")
    if per_week is not None and not 1 <= per_week <= 49:
        raise ValueError(f"per_week must be 1..49, got {per_week}")
    if per_day is not None and not 1 <= per_day <= 7:
        raise ValueError(f"per_day must be 1..7, got {per_day}")


def _check_weekdays(weekdays: tuple[int, ...]) -> None:
    bad = [day for day in weekdays if day not in _WEEK]
    if bad:
        raise ValueError(f"weekdays must be 0 (Monday) .. 6 (Sunday), got {bad}")


def _check_times(times: tuple[time, ...]) -> None:
    # An aware time would carry its own zone and fight the brand's zone.
    if any(t.tzinfo is not None for t in times):
        raise ValueError("preferred times are local wall-clock times, without a tzinfo")


def month_bounds(month: str) -> tuple[date, date]:
    """The first and last day of a ``YYYY-MM`` month: ``"2026-12"`` -> Dec 1 .. Dec 31."""
    match = _MONTH.fullmatch(month)
    if match is None or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"month must be YYYY-MM with month 01..12, got {month!r}")
    year, number = int(match[1]), int(match[2])
    if year < 1:
        raise ValueError(f"month must be in year 0001 or later, got {month!r}")
    first = date(year, number, 1)
    return first, _next_month(first) - timedelta(days=1)


def _next_month(first: date) -> date:
    if first.month == 12:
        return date(first.year + 1, 1, 1)
    return date(first.year, first.month + 1, 1)


def posts_per_weekday(cadence: ChannelCadence) -> dict[int, int]:
    """How many posts fall on each weekday (0..6) in every week (weekdays with 0 omitted)."""
    days = sorted(set(cadence.weekdays)) or list(_WEEK)
    if cadence.per_day is not None:
        return dict.fromkeys(days, cadence.per_day)
    if cadence.per_week is None:  # ChannelCadence forbids this; here for the type checker.
        raise ValueError("a cadence sets exactly one of per_week and per_day")
    return _spread(cadence.per_week, days)


def _spread(per_week: int, days: list[int]) -> dict[int, int]:
    """Share ``per_week`` posts over ``days``, the remainder on evenly spaced days."""
    base, extra = divmod(per_week, len(days))
    counts = dict.fromkeys(days, base)
    # extra < len(days), so the step len(days) / extra exceeds 1: each index is distinct.
    for i in range(extra):
        counts[days[i * len(days) // extra]] += 1
    return {day: count for day, count in counts.items() if count > 0}


def times_for(count: int, preferred: tuple[time, ...]) -> tuple[time, ...]:
    """The wall times of a day carrying ``count`` posts."""
    if count < 1:
        raise ValueError(f"a day carries at least one post, got {count}")
    if preferred:
        return _preferred_times(count, preferred)
    return _default_times(count)


def _preferred_times(count: int, preferred: tuple[time, ...]) -> tuple[time, ...]:
    # Duplicates would collide on the (channel, date, time) idempotency key.
    distinct = list(dict.fromkeys(preferred))
    if len(distinct) < count:
        raise ValueError(
            f"a day with {count} posts needs {count} distinct preferred times, got {len(distinct)}"
        )
    return tuple(sorted(distinct[:count]))


def _default_times(count: int) -> tuple[time, ...]:
    if count == 1:
        return (_SINGLE_POST_AT,)
    # Integer minutes floor the step exactly, with no float rounding drift.
    minutes = (_FIRST_POST_MINUTE + j * _POSTING_SPAN_MINUTES // (count - 1) for j in range(count))
    return tuple(time(m // 60, m % 60) for m in minutes)


def lay_out_month(
    *,
    month: str,
    tz: ZoneInfo,
    cadence: Mapping[str, ChannelCadence],
    starts_on: date | None,
    ends_on: date | None,
) -> list[Slot]:
    """Slots of every channel for the days of ``month`` inside [starts_on, ends_on].

    Sorted by (scheduled_at, channel), then wall time.
    """
    days = list(_days_in(month, starts_on, ends_on))
    slots = [
        slot
        for channel, channel_cadence in cadence.items()
        for slot in _channel_slots(channel, channel_cadence, days, tz)
    ]
    return sorted(slots, key=lambda slot: (slot.scheduled_at, slot.channel, slot.local_time))


def _days_in(month: str, starts_on: date | None, ends_on: date | None) -> Iterator[date]:
    first, last = month_bounds(month)
    if starts_on is not None:
        first = max(first, starts_on)
    if ends_on is not None:
        last = min(last, ends_on)
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _channel_slots(
    channel: str, cadence: ChannelCadence, days: list[date], tz: ZoneInfo
) -> Iterator[Slot]:
    # Resolve times for every weekday up front, so a bad cadence fails whatever the range.
    times = {
        weekday: times_for(count, cadence.times)
        for weekday, count in posts_per_weekday(cadence).items()
    }
    for day in days:
        for wall in times.get(day.weekday(), ()):
            yield Slot(channel, day, wall, _to_utc(day, wall, tz))


def _to_utc(day: date, wall: time, tz: ZoneInfo) -> datetime:
    # fold=0 pins the documented gap/overlap behaviour even if a caller passed fold=1.
    local = datetime.combine(day, wall.replace(fold=0), tzinfo=tz)
    return local.astimezone(UTC)
