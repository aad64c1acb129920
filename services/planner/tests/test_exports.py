"""Calendar exports: CSV cells are safe in a spreadsheet, ICS files parse back as written."""

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from icalendar import Calendar, Component, vCategory

from bai_platform.spreadsheets import neutralise
from planner.service.exports import CSV_COLUMNS, CalendarEntry, calendar_csv, calendar_ics

WINTER_MORNING = datetime(2027, 1, 15, 9, 0, tzinfo=UTC)
STAMP = datetime(2027, 1, 1, tzinfo=UTC)


def entry(**changes: Any) -> CalendarEntry:
    base = CalendarEntry(
        post_id=uuid4(),
        campaign="Spring launch",
        channel="instagram",
        scheduled_at=WINTER_MORNING,
        timezone="Europe/Madrid",
        state="approved",
        title="Launch day",
        text="We are live.",
        hashtags=("launch", "spring"),
        call_to_action="Shop now",
    )
    return replace(base, **changes)


def csv_rows(*entries: CalendarEntry) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(calendar_csv(entries)), newline="")))


def ics_events(*entries: CalendarEntry, name: str = "Spring launch") -> list[Component]:
    calendar = Calendar.from_ical(calendar_ics(entries, name=name, stamp=STAMP))
    return list(calendar.walk("VEVENT"))


@pytest.mark.parametrize("cell", ["=1+1", "+SUM(A1:A2)", "-2", "@cmd", "\tx", "\rx"])
def test_formula_cells_are_prefixed_with_a_quote(cell: str) -> None:
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["", "Hello", "'Tis the season", "a-b", "50% off!", "#launch"])
def test_ordinary_text_is_left_untouched(cell: str) -> None:
    assert neutralise(cell) == cell


def test_a_cell_already_quoted_before_a_formula_gets_one_more_quote() -> None:
    assert neutralise("'=1+1") == "''=1+1"


def test_every_text_cell_in_the_csv_is_neutralised() -> None:
    (row,) = csv_rows(
        entry(campaign="=HYPERLINK()", title="@cmd", text="=1+1", call_to_action="-2")
    )

    assert (row["campaign"], row["title"], row["text"], row["call_to_action"]) == (
        "'=HYPERLINK()",
        "'@cmd",
        "'=1+1",
        "'-2",
    )


def test_text_with_commas_quotes_and_newlines_round_trips_through_csv_reader() -> None:
    text = 'Hello, "world";\nsecond line\r\nthird, line'

    (row,) = csv_rows(entry(text=text))

    assert row["text"] == text


def test_the_header_lists_the_columns_in_order() -> None:
    header = next(calendar_csv([]))

    assert header == ",".join(CSV_COLUMNS) + "\r\n"
    assert CSV_COLUMNS[:4] == ("post_id", "campaign", "channel", "scheduled_at")


def test_rows_end_with_crlf_and_quote_only_when_needed() -> None:
    chunks = list(calendar_csv([entry(title="Plain", text="a, b")]))

    assert all(chunk.endswith("\r\n") for chunk in chunks)
    assert ',Plain,"a, b",' in chunks[1]


def test_scheduled_at_is_utc_with_z_and_local_time_has_the_zone_offset() -> None:
    (row,) = csv_rows(entry(scheduled_at=WINTER_MORNING))

    assert row["scheduled_at"] == "2027-01-15T09:00:00Z"
    assert row["local_time"] == "2027-01-15T10:00:00+01:00"
    assert row["timezone"] == "Europe/Madrid"


def test_an_aware_time_in_another_zone_is_written_in_utc() -> None:
    new_york_winter = timezone(timedelta(hours=-5))

    (row,) = csv_rows(entry(scheduled_at=datetime(2027, 1, 15, 4, 0, tzinfo=new_york_winter)))

    assert row["scheduled_at"] == "2027-01-15T09:00:00Z"


def test_a_naive_scheduled_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        csv_rows(entry(scheduled_at=datetime(2027, 1, 15, 9, 0)))


def test_hashtags_are_space_separated_with_a_hash() -> None:
    (row,) = csv_rows(entry(hashtags=("launch", "#spring", "día")))

    assert row["hashtags"] == "#launch #spring #día"


def test_missing_optional_fields_are_empty_cells() -> None:
    (row,) = csv_rows(entry(title=None, text=None, hashtags=(), call_to_action=None))

    assert (row["title"], row["text"], row["hashtags"], row["call_to_action"]) == ("", "", "", "")


def test_calendar_csv_pulls_entries_only_as_chunks_are_taken() -> None:
    def one_then_failure() -> Iterator[CalendarEntry]:
        yield entry(title="First")
        raise RuntimeError("the database went away")

    chunks = calendar_csv(one_then_failure())

    assert next(chunks).startswith("post_id,")
    assert ",First," in next(chunks)
    with pytest.raises(RuntimeError, match="went away"):
        next(chunks)


def test_ics_has_one_vevent_per_entry_with_uid_utc_start_and_status() -> None:
    first, second = uuid4(), uuid4()
    later = WINTER_MORNING + timedelta(days=1)

    events = ics_events(entry(post_id=first), entry(post_id=second, scheduled_at=later))

    assert [str(event["UID"]) for event in events] == [f"{first}@bai", f"{second}@bai"]
    assert [event.decoded("DTSTART") for event in events] == [WINTER_MORNING, later]
    assert all(event.decoded("DTSTART").utcoffset() == timedelta(0) for event in events)
    assert [str(event["STATUS"]) for event in events] == ["CONFIRMED", "CONFIRMED"]


def test_ics_writes_start_and_stamp_as_utc_with_z() -> None:
    payload = calendar_ics([entry()], name="Spring", stamp=STAMP)

    assert b"DTSTART:20270115T090000Z\r\n" in payload
    assert b"DTSTAMP:20270101T000000Z\r\n" in payload


def test_ics_calendar_carries_its_name_and_product_id() -> None:
    payload = calendar_ics([], name="Spring, launch", prodid="-//Test//x//EN", stamp=STAMP)
    calendar = Calendar.from_ical(payload)

    assert str(calendar["PRODID"]) == "-//Test//x//EN"
    assert str(calendar["VERSION"]) == "2.0"
    # TEXT escaping, as clients unescape it (icalendar itself reads X- properties back raw).
    assert b"X-WR-CALNAME:Spring\\, launch\r\n" in payload


def test_ics_calendar_name_is_kept_on_one_line() -> None:
    payload = calendar_ics([], name="Spring\nlaunch", stamp=STAMP)

    assert b"X-WR-CALNAME:Spring launch\r\n" in payload


def test_ics_event_lasts_thirty_minutes_and_is_filed_under_its_channel() -> None:
    (event,) = ics_events(entry(channel="linkedin"))

    assert event.decoded("DURATION") == timedelta(minutes=30)
    categories = event["CATEGORIES"]
    assert isinstance(categories, vCategory)
    assert categories.cats == ["linkedin"]


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("approved", "CONFIRMED"),
        ("scheduled", "CONFIRMED"),
        ("published", "CONFIRMED"),
        ("rejected", "CANCELLED"),
        ("draft", "TENTATIVE"),
        ("in_review", "TENTATIVE"),
    ],
)
def test_ics_status_follows_the_post_state(state: str, status: str) -> None:
    (event,) = ics_events(entry(state=state))

    assert str(event["STATUS"]) == status


@pytest.mark.parametrize(
    ("title", "text", "summary"),
    [
        ("Launch day", "ignored", "instagram: Launch day"),
        (None, "x" * 80, "instagram: " + "x" * 60),
        (None, "two\nlines", "instagram: two lines"),
        (None, None, "instagram: Post"),
    ],
)
def test_ics_summary_is_the_channel_and_title_or_text_or_post(
    title: str | None, text: str | None, summary: str
) -> None:
    (event,) = ics_events(entry(title=title, text=text))

    assert str(event["SUMMARY"]) == summary


def test_ics_description_holds_text_hashtags_and_call_to_action() -> None:
    (event,) = ics_events(entry(text="Live now", hashtags=("a", "b"), call_to_action="Buy"))

    assert str(event["DESCRIPTION"]) == "Live now\n\n#a #b\n\nBuy"


def test_ics_folds_a_long_description_into_lines_of_at_most_75_octets() -> None:
    text = "Ñandú " * 60  # multi-byte characters must not be split across a fold
    payload = calendar_ics([entry(text=text, hashtags=(), call_to_action=None)], name="S")

    lines = payload.split(b"\r\n")
    assert all(len(line) <= 75 for line in lines)
    assert any(line.startswith(b" ") for line in lines)
    (event,) = Calendar.from_ical(payload).walk("VEVENT")
    assert str(event["DESCRIPTION"]) == text


def test_ics_escapes_commas_semicolons_and_newlines() -> None:
    text = "Sale, today; only\nsee you"

    payload = calendar_ics([entry(text=text, hashtags=(), call_to_action=None)], name="S")

    assert b"DESCRIPTION:Sale\\, today\\; only\\nsee you\r\n" in payload
    (event,) = Calendar.from_ical(payload).walk("VEVENT")
    assert str(event["DESCRIPTION"]) == text


def test_ics_of_no_entries_is_an_empty_calendar() -> None:
    calendar = Calendar.from_ical(calendar_ics([], name="Empty"))

    assert calendar.walk("VEVENT") == []


def test_post_id_is_written_as_the_uuid() -> None:
    post_id = UUID("12345678-1234-5678-1234-567812345678")

    (row,) = csv_rows(entry(post_id=post_id))

    assert row["post_id"] == str(post_id)
