"""Content calendar layout: weekly patterns, default and preferred times, zones and DST."""

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from planner.service.calendar import (
    ChannelCadence,
    Slot,
    lay_out_month,
    month_bounds,
    posts_per_weekday,
    times_for,
)

MADRID = ZoneInfo("Europe/Madrid")
NEW_YORK = ZoneInfo("America/New_York")
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def _month(
    month: str,
    cadence: dict[str, ChannelCadence],
    *,
    tz: ZoneInfo = MADRID,
    starts_on: date | None = None,
    ends_on: date | None = None,
) -> list[Slot]:
    return lay_out_month(month=month, tz=tz, cadence=cadence, starts_on=starts_on, ends_on=ends_on)


def _utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _daily_at(wall: time) -> dict[str, ChannelCadence]:
    return {"instagram": ChannelCadence(per_day=1, times=(wall,))}


def test_december_in_madrid_spreads_three_and_two_posts_a_week_at_ten_local() -> None:
    cadence = {"instagram": ChannelCadence(per_week=3), "linkedin": ChannelCadence(per_week=2)}
    slots = _month("2026-12", cadence)
    # Dec 1 2026 is a Tuesday. Mondays 7 14 21 28 (4), Wednesdays 2 9 16 23 30 (5),
    # Thursdays 3 10 17 24 31 (5), Fridays 4 11 18 25 (4).
    # instagram Mon/Wed/Fri: 4 + 5 + 4 = 13; linkedin Mon/Thu: 4 + 5 = 9; total 22.
    assert len(slots) == 22
    instagram = [s for s in slots if s.channel == "instagram"]
    assert len(instagram) == 13
    assert {s.local_date.weekday() for s in instagram} == {MON, WED, FRI}
    assert {s.local_date.weekday() for s in slots if s.channel == "linkedin"} == {MON, THU}
    assert all(s.local_time == time(10, 0) for s in slots)
    # CET is UTC+1 all December.
    assert all(s.scheduled_at == _utc(2026, 12, s.local_date.day, 9) for s in slots)
    assert slots == sorted(slots, key=lambda s: (s.scheduled_at, s.channel))


def test_scheduled_instants_are_aware_and_in_utc() -> None:
    slots = _month("2026-12", {"x": ChannelCadence(per_day=2)}, tz=NEW_YORK)
    assert all(s.scheduled_at.tzinfo is UTC for s in slots)


def test_a_daily_madrid_post_moves_one_hour_earlier_in_utc_when_summer_time_starts() -> None:
    slots = _month("2027-03", _daily_at(time(10, 0)))
    assert [s.local_date for s in slots] == _days(date(2027, 3, 1), date(2027, 3, 31))
    assert all(s.local_time == time(10, 0) for s in slots)
    for slot in slots:
        # CET (UTC+1) until Saturday the 27th, CEST (UTC+2) from Sunday the 28th.
        hour = 9 if slot.local_date < date(2027, 3, 28) else 8
        assert slot.scheduled_at == _utc(2027, 3, slot.local_date.day, hour)


def test_a_daily_new_york_post_moves_one_hour_earlier_in_utc_when_daylight_time_starts() -> None:
    slots = _month("2027-03", _daily_at(time(9, 0)), tz=NEW_YORK)
    assert len(slots) == 31
    for slot in slots:
        # EST (UTC-5) until the 13th, EDT (UTC-4) from Sunday the 14th.
        hour = 14 if slot.local_date < date(2027, 3, 14) else 13
        assert slot.scheduled_at == _utc(2027, 3, slot.local_date.day, hour)
        assert slot.local_time == time(9, 0)


def test_a_new_york_post_moves_one_hour_later_in_utc_when_daylight_time_ends() -> None:
    october = _month("2026-10", _daily_at(time(9, 0)), tz=NEW_YORK)
    november = _month("2026-11", _daily_at(time(9, 0)), tz=NEW_YORK)
    # Saturday Oct 31 is still EDT; DST ends at 02:00 on Sunday Nov 1.
    assert october[-1].scheduled_at == _utc(2026, 10, 31, 13)
    assert len(november) == 30
    assert all(s.scheduled_at == _utc(2026, 11, s.local_date.day, 14) for s in november)


def test_a_wall_time_in_the_spring_gap_goes_out_one_gap_later_and_keeps_its_wall_time() -> None:
    slots = _month("2027-03", _daily_at(time(2, 30)))
    (gap_day,) = [s for s in slots if s.local_date == date(2027, 3, 28)]
    # 02:30 does not exist on the 28th; fold=0 reads it as CET, i.e. 03:30 CEST = 01:30Z.
    assert gap_day.scheduled_at == _utc(2027, 3, 28, 1, 30)
    assert gap_day.local_time == time(2, 30)


def test_a_wall_time_in_the_autumn_overlap_uses_its_first_occurrence() -> None:
    slots = _month("2026-10", _daily_at(time(2, 30)))
    (overlap_day,) = [s for s in slots if s.local_date == date(2026, 10, 25)]
    # 02:30 happens twice on Oct 25; the first is still CEST (UTC+2).
    assert overlap_day.scheduled_at == _utc(2026, 10, 25, 0, 30)


def test_campaign_bounds_keep_every_slot_inside_them() -> None:
    starts_on, ends_on = date(2026, 12, 10), date(2026, 12, 20)
    slots = _month(
        "2026-12", {"instagram": ChannelCadence(per_day=1)}, starts_on=starts_on, ends_on=ends_on
    )
    assert [s.local_date for s in slots] == _days(starts_on, ends_on)


def test_a_month_outside_the_campaign_has_no_slots() -> None:
    cadence = {"instagram": ChannelCadence(per_day=3)}
    assert _month("2026-11", cadence, starts_on=date(2026, 12, 1)) == []
    assert _month("2027-01", cadence, ends_on=date(2026, 12, 31)) == []


def test_consecutive_months_partition_the_week_that_straddles_them() -> None:
    cadence = {"instagram": ChannelCadence(per_week=3)}
    november, december = _month("2026-11", cadence), _month("2026-12", cadence)
    assert all(s.local_date.month == 11 for s in november)
    assert all(s.local_date.month == 12 for s in december)
    keys = [(s.channel, s.local_date, s.local_time) for s in november + december]
    assert len(keys) == len(set(keys))
    expected = [
        d for d in _days(date(2026, 11, 1), date(2026, 12, 31)) if d.weekday() in (MON, WED, FRI)
    ]
    assert sorted(s.local_date for s in november + december) == expected


def test_laying_out_the_same_month_twice_gives_the_same_slots() -> None:
    cadence = {
        "linkedin": ChannelCadence(per_week=10, times=(time(18), time(9), time(12))),
        "instagram": ChannelCadence(per_day=2),
    }
    assert _month("2027-03", cadence) == _month("2027-03", cadence)


def test_ten_a_week_without_weekdays_doubles_up_on_three_spread_days() -> None:
    per_day = posts_per_weekday(ChannelCadence(per_week=10))
    assert per_day == {MON: 2, TUE: 1, WED: 2, THU: 1, FRI: 2, SAT: 1, SUN: 1}
    assert sum(per_day.values()) == 10


@pytest.mark.parametrize(
    ("per_week", "weekdays"),
    [(1, (MON,)), (2, (MON, THU)), (3, (MON, WED, FRI)), (7, tuple(range(7)))],
)
def test_up_to_seven_a_week_without_weekdays_spread_one_post_over_even_days(
    per_week: int, weekdays: tuple[int, ...]
) -> None:
    assert posts_per_weekday(ChannelCadence(per_week=per_week)) == dict.fromkeys(weekdays, 1)


def test_five_a_week_on_two_weekdays_gives_the_extra_post_to_the_first() -> None:
    assert posts_per_weekday(ChannelCadence(per_week=5, weekdays=(WED, MON))) == {MON: 3, WED: 2}


def test_fewer_posts_than_weekdays_omits_the_days_left_empty() -> None:
    cadence = ChannelCadence(per_week=2, weekdays=(MON, TUE, WED, THU))
    assert posts_per_weekday(cadence) == {MON: 1, WED: 1}


def test_per_day_posts_on_every_day_or_only_on_the_given_weekdays() -> None:
    assert posts_per_weekday(ChannelCadence(per_day=2)) == dict.fromkeys(range(7), 2)
    assert posts_per_weekday(ChannelCadence(per_day=2, weekdays=(SAT, SUN))) == {SAT: 2, SUN: 2}


def test_seven_posts_a_day_default_to_every_two_hours_from_eight_to_twenty() -> None:
    assert times_for(7, ()) == tuple(time(hour) for hour in range(8, 21, 2))


def test_default_times_are_ten_for_one_post_and_the_span_ends_for_two() -> None:
    assert times_for(1, ()) == (time(10, 0),)
    assert times_for(2, ()) == (time(8, 0), time(20, 0))


def test_default_times_round_down_to_the_minute() -> None:
    # Eight posts: steps of 12 h / 7 = 102.86 min, floored to 102 min, so 08:00 then 09:42.
    assert times_for(8, ())[1] == time(9, 42)


def test_preferred_times_are_used_in_order_of_the_day() -> None:
    cadence = {"instagram": ChannelCadence(per_day=2, times=(time(18, 0), time(9, 0)))}
    slots = _month("2026-12", cadence, starts_on=date(2026, 12, 1), ends_on=date(2026, 12, 1))
    assert [s.local_time for s in slots] == [time(9, 0), time(18, 0)]


def test_a_day_with_fewer_posts_takes_the_first_preferred_times() -> None:
    assert times_for(2, (time(18), time(9), time(12))) == (time(9), time(18))


def test_not_enough_preferred_times_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="needs 3 distinct preferred times, got 2"):
        times_for(3, (time(9), time(18)))
    with pytest.raises(ValueError, match="needs 2 distinct preferred times, got 1"):
        _month("2026-12", {"x": ChannelCadence(per_day=2, times=(time(9), time(9)))})


@pytest.mark.parametrize(
    ("month", "first", "last"),
    [
        ("2026-02", date(2026, 2, 1), date(2026, 2, 28)),
        ("2028-02", date(2028, 2, 1), date(2028, 2, 29)),
        ("2026-12", date(2026, 12, 1), date(2026, 12, 31)),
    ],
)
def test_month_bounds_are_the_first_and_last_day(month: str, first: date, last: date) -> None:
    assert month_bounds(month) == (first, last)


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "2026-1", "abc", "2026-12-01", ""])
def test_a_malformed_month_is_a_value_error(month: str) -> None:
    with pytest.raises(ValueError, match="month must be YYYY-MM"):
        month_bounds(month)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"per_week": 3, "per_day": 1}, {"per_week": 50}, {"per_day": 0}, {"weekdays": (7,)}],
)
def test_an_impossible_cadence_is_a_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"per_week|per_day|weekdays"):
        ChannelCadence(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cadence",
    [
        ChannelCadence(per_week=3),
        ChannelCadence(per_week=3, weekdays=(TUE, SAT, SUN)),
        ChannelCadence(per_week=3, times=(time(2, 30),)),
    ],
)
def test_every_full_iso_week_of_a_year_long_campaign_has_exactly_three_slots(
    cadence: ChannelCadence,
) -> None:
    # Odd bounds (a Wednesday and a Thursday) leave partial weeks at both ends.
    starts_on, ends_on = date(2027, 1, 13), date(2027, 11, 18)
    months = [f"2027-{number:02d}" for number in range(1, 13)]
    slots = [
        slot
        for month in months
        for slot in _month(month, {"x": cadence}, starts_on=starts_on, ends_on=ends_on)
    ]
    per_week = Counter(s.local_date - timedelta(days=s.local_date.weekday()) for s in slots)
    mondays = [d for d in _days(starts_on, ends_on) if d.weekday() == MON]
    full_weeks = [m for m in mondays if m + timedelta(days=6) <= ends_on]
    assert len(full_weeks) > 40
    assert all(per_week[monday] == 3 for monday in full_weeks)
    assert all(starts_on <= s.local_date <= ends_on for s in slots)
