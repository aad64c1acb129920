"""Bulk CSV import: every row checked, every error reported with its spreadsheet row number."""

from datetime import UTC, date, datetime, time
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from planner.service.exports import CalendarEntry, calendar_csv
from planner.service.imports import ImportReport, RowError, parse_posts_csv

MADRID = ZoneInfo("Europe/Madrid")
CHANNELS = frozenset({"instagram", "linkedin"})
HEADER = "channel,scheduled_at,title,text,hashtags"


def csv_bytes(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


def parse(data: bytes, **rules: Any) -> ImportReport:
    options: dict[str, Any] = {
        "tz": MADRID,
        "channels": CHANNELS,
        "starts_on": date(2027, 1, 1),
        "ends_on": date(2027, 12, 31),
    }
    options.update(rules)
    return parse_posts_csv(data, **options)


def only_error(report: ImportReport) -> RowError:
    assert report.posts == ()
    (error,) = report.errors
    return error


def test_a_valid_file_converts_madrid_wall_times_to_utc() -> None:
    report = parse(
        csv_bytes(
            HEADER,
            "instagram,2027-01-15 10:00,Winter,Cold outside,#winter #sale",
            "linkedin,2027-03-27T10:00,Before DST,,",
            "instagram,2027-03-29 10:00,After DST,,",
            "linkedin,2027-07-01T18:30:15,Summer,,",
        )
    )

    assert report.ok
    assert [post.scheduled_at for post in report.posts] == [
        datetime(2027, 1, 15, 9, 0, tzinfo=UTC),
        datetime(2027, 3, 27, 9, 0, tzinfo=UTC),
        datetime(2027, 3, 29, 8, 0, tzinfo=UTC),
        datetime(2027, 7, 1, 16, 30, 15, tzinfo=UTC),
    ]
    first = report.posts[0]
    assert (first.row, first.channel, first.title, first.text) == (
        2,
        "instagram",
        "Winter",
        "Cold outside",
    )
    assert (first.local_date, first.local_time) == (date(2027, 1, 15), time(10, 0))
    assert first.hashtags == ("winter", "sale")
    assert report.posts[1].text is None


def test_an_explicit_offset_or_z_is_converted_and_the_local_date_follows_the_zone() -> None:
    report = parse(
        csv_bytes(
            "channel,scheduled_at",
            "instagram,2027-05-01T23:30:00Z",
            "linkedin,2027-05-01T08:00+05:00",
        )
    )

    assert report.ok
    late, early = report.posts
    assert late.scheduled_at == datetime(2027, 5, 1, 23, 30, tzinfo=UTC)
    assert (late.local_date, late.local_time) == (date(2027, 5, 2), time(1, 30))
    assert early.scheduled_at == datetime(2027, 5, 1, 3, 0, tzinfo=UTC)


def test_a_utf8_bom_as_excel_writes_it_is_accepted() -> None:
    report = parse(
        b"\xef\xbb\xbf" + csv_bytes("channel,scheduled_at,text", "instagram,2027-01-15 10:00,Año")
    )

    assert report.ok
    assert report.posts[0].text == "Año"


def test_bytes_that_are_not_utf8_are_one_file_error() -> None:
    error = only_error(parse(csv_bytes("channel,scheduled_at,text") + "x,y,Año".encode("latin-1")))

    assert (error.row, error.column) == (0, None)
    assert "UTF-8" in error.message


def test_header_names_match_ignoring_case_and_surrounding_spaces() -> None:
    report = parse(csv_bytes(" Channel , SCHEDULED_AT ", "instagram,2027-01-15 10:00"))

    assert report.ok


def test_a_missing_required_column_is_reported_on_row_1() -> None:
    error = only_error(parse(csv_bytes("channel,text", "instagram,hello")))

    assert (error.row, error.column) == (1, "scheduled_at")
    assert "scheduled_at" in error.message


def test_an_unknown_column_is_reported_on_row_1_so_typos_do_not_drop_data() -> None:
    error = only_error(
        parse(csv_bytes("channel,scheduled_at,txet", "instagram,2027-01-15 10:00,x"))
    )

    assert (error.row, error.column) == (1, "txet")
    assert "'txet'" in error.message


def test_a_column_given_twice_is_reported() -> None:
    error = only_error(
        parse(csv_bytes("channel,scheduled_at,text,Text", "instagram,2027-01-15 10:00,a,b"))
    )

    assert (error.row, error.column) == (1, "text")


def test_empty_lines_are_skipped_but_still_count_as_spreadsheet_rows() -> None:
    report = parse(
        csv_bytes(
            "channel,scheduled_at", "", "instagram,2027-01-15 10:00", ",", "nope,2027-01-15 11:00"
        )
    )

    assert [post.row for post in report.posts] == [3]
    assert [error.row for error in report.errors] == [5]


def test_an_empty_file_and_a_header_without_rows_are_file_errors() -> None:
    assert only_error(parse(b"")).row == 0
    assert "no posts" in only_error(parse(csv_bytes("channel,scheduled_at"))).message


def test_an_unknown_channel_names_the_allowed_ones() -> None:
    error = only_error(parse(csv_bytes("channel,scheduled_at", "tiktok,2027-01-15 10:00")))

    assert (error.row, error.column) == (2, "channel")
    assert "'tiktok'" in error.message
    assert "instagram, linkedin" in error.message


def test_a_channel_matches_ignoring_case_and_takes_the_campaign_spelling() -> None:
    report = parse(csv_bytes("channel,scheduled_at", " Instagram ,2027-01-15 10:00"))

    assert report.posts[0].channel == "instagram"


@pytest.mark.parametrize(
    "value",
    [
        "15/01/2027 10:00",
        "2027-01-15",
        "2027-02-30 10:00",
        "2027-01-15 25:00",
        "2027-01-15 10:00+25:00",
        "",
    ],
)
def test_a_bad_date_is_reported_on_scheduled_at(value: str) -> None:
    error = only_error(parse(csv_bytes("channel,scheduled_at", f"instagram,{value}")))

    assert (error.row, error.column) == (2, "scheduled_at")


def test_a_wall_time_skipped_by_the_clock_change_is_refused() -> None:
    error = only_error(parse(csv_bytes("channel,scheduled_at", "instagram,2027-03-28 02:30")))

    assert "does not exist in Europe/Madrid" in error.message


def test_a_wall_time_repeated_by_the_clock_change_asks_for_an_offset() -> None:
    ambiguous = parse(csv_bytes("channel,scheduled_at", "instagram,2027-10-31 02:30"))
    with_offset = parse(csv_bytes("channel,scheduled_at", "instagram,2027-10-31 02:30+01:00"))

    assert "add the offset" in only_error(ambiguous).message
    assert with_offset.posts[0].scheduled_at == datetime(2027, 10, 31, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "word"), [("2026-12-31 23:59", "before"), ("2028-01-01 00:00", "after")]
)
def test_a_date_outside_the_campaign_is_refused(value: str, word: str) -> None:
    error = only_error(parse(csv_bytes("channel,scheduled_at", f"instagram,{value}")))

    assert (error.row, error.column) == (2, "scheduled_at")
    assert word in error.message


def test_the_campaign_window_uses_the_local_date() -> None:
    # 23:30Z on 31 December is already 1 January in Madrid.
    report = parse(csv_bytes("channel,scheduled_at", "instagram,2026-12-31T23:30Z"))

    assert report.posts[0].local_date == date(2027, 1, 1)


def test_an_open_campaign_window_accepts_any_date() -> None:
    report = parse(
        csv_bytes("channel,scheduled_at", "instagram,1999-01-01 10:00"),
        starts_on=None,
        ends_on=None,
    )

    assert report.ok


@pytest.mark.parametrize(
    ("column", "limit"),
    [
        ("title", 200),
        ("text", 5000),
        ("call_to_action", 300),
        ("image_prompt", 1000),
        ("alt_text", 1000),
    ],
)
def test_a_text_longer_than_its_limit_is_refused(column: str, limit: int) -> None:
    at_limit = parse(
        csv_bytes(f"channel,scheduled_at,{column}", f"instagram,2027-01-15 10:00,{'a' * limit}")
    )
    over = parse(
        csv_bytes(
            f"channel,scheduled_at,{column}", f"instagram,2027-01-15 10:00,{'a' * (limit + 1)}"
        )
    )

    assert at_limit.ok
    error = only_error(over)
    assert (error.row, error.column) == (2, column)
    assert str(limit) in error.message


def test_all_optional_fields_are_read() -> None:
    report = parse(
        csv_bytes(
            "channel,scheduled_at,title,text,hashtags,call_to_action,image_prompt,alt_text",
            "instagram,2027-01-15 10:00,T,X,#a,Buy,A red bike,A bike",
        )
    )

    post = report.posts[0]
    assert (post.call_to_action, post.image_prompt, post.alt_text) == (
        "Buy",
        "A red bike",
        "A bike",
    )


def test_a_nul_character_is_refused_in_any_cell() -> None:
    report = parse(
        csv_bytes(
            "channel,scheduled_at,text,post_id",
            "instagram,2027-01-15 10:00,bad\x00text,",
            "instagram,2027-01-15 11:00,fine,id\x00",
        )
    )

    assert [(error.row, error.column) for error in report.errors] == [(2, "text"), (3, "post_id")]
    assert all("NUL" in error.message for error in report.errors)


def test_hashtags_are_split_on_spaces_and_commas_without_hash_and_deduplicated() -> None:
    report = parse(
        csv_bytes(
            "channel,scheduled_at,hashtags",
            'instagram,2027-01-15 10:00,"#Sale, #año  sale,#año, x_1"',
        )
    )

    assert report.posts[0].hashtags == ("Sale", "año", "x_1")


@pytest.mark.parametrize("hashtags", ["#good #bad-tag", "#", "#" + "a" * 101, "##double"])
def test_a_bad_hashtag_is_refused(hashtags: str) -> None:
    error = only_error(
        parse(csv_bytes("channel,scheduled_at,hashtags", f"instagram,2027-01-15 10:00,{hashtags}"))
    )

    assert (error.row, error.column) == (2, "hashtags")
    assert "invalid hashtags" in error.message


def test_more_than_30_hashtags_are_refused() -> None:
    tags = " ".join(f"#t{index}" for index in range(31))

    error = only_error(
        parse(csv_bytes("channel,scheduled_at,hashtags", f"instagram,2027-01-15 10:00,{tags}"))
    )

    assert "at most 30" in error.message


def test_more_rows_than_the_limit_is_one_file_error() -> None:
    rows = [f"instagram,2027-01-{day:02d} 10:00" for day in range(1, 5)]

    assert parse(csv_bytes("channel,scheduled_at", *rows[:3]), max_rows=3).ok
    error = only_error(parse(csv_bytes("channel,scheduled_at", *rows), max_rows=3))
    assert (error.row, error.column) == (0, None)
    assert "at most 3" in error.message


def test_a_duplicate_slot_names_the_earlier_row() -> None:
    report = parse(
        csv_bytes(
            "channel,scheduled_at",
            "instagram,2027-01-15 10:00",
            "linkedin,2027-01-15 10:00",
            "instagram,2027-01-15T09:00:00Z",
        )
    )

    error = report.errors[0]
    assert len(report.errors) == 1
    assert (error.row, error.column) == (4, "scheduled_at")
    assert "row 2" in error.message
    assert [post.row for post in report.posts] == [2, 3]
    assert not report.ok


def test_errors_from_several_rows_are_all_reported_with_their_row_numbers() -> None:
    report = parse(
        csv_bytes(
            "channel,scheduled_at,hashtags",
            "instagram,2027-01-15 10:00,#ok",
            "tiktok,yesterday,#ok",
            '"linkedin","2027-01-16 10:00","#ok"',
            'instagram,2027-01-17 10:00,"#a,#b-c"',
        )
    )

    assert [(error.row, error.column) for error in report.errors] == [
        (3, "channel"),
        (3, "scheduled_at"),
        (5, "hashtags"),
    ]
    assert [post.row for post in report.posts] == [2, 4]
    assert not report.ok


def test_a_multi_line_cell_counts_as_one_spreadsheet_row() -> None:
    report = parse(
        csv_bytes(
            "channel,scheduled_at,text",
            'instagram,2027-01-15 10:00,"one\r\ntwo"',
            "nope,2027-01-15 11:00,",
        )
    )

    assert report.posts[0].text == "one\r\ntwo"
    assert report.errors[0].row == 3


def test_a_value_under_no_header_is_refused() -> None:
    error = only_error(
        parse(csv_bytes("channel,scheduled_at", "instagram,2027-01-15 10:00,surprise"))
    )

    assert (error.row, error.column) == (2, None)


def test_a_stray_quote_is_reported_instead_of_merging_cells() -> None:
    error = only_error(
        parse(csv_bytes("channel,scheduled_at,text", 'instagram,2027-01-15 10:00,"a"b'))
    )

    assert error.row == 2
    assert "not valid CSV" in error.message


def test_an_exported_calendar_is_re_imported_losslessly_into_another_campaign() -> None:
    entries = [
        CalendarEntry(
            post_id=uuid4(),
            campaign="=Old campaign",
            channel="instagram",
            scheduled_at=datetime(2027, 3, 29, 8, 0, tzinfo=UTC),
            timezone="Europe/Madrid",
            state="=approved",
            title="-minus",
            text='=cmd, with "quotes"\nand lines',
            hashtags=("año", "sale"),
            call_to_action="@mention",
        ),
        CalendarEntry(
            post_id=uuid4(),
            campaign="Old",
            channel="linkedin",
            scheduled_at=datetime(2027, 1, 15, 9, 0, tzinfo=UTC),
            timezone="Europe/Madrid",
            state="draft",
            title="'Tis the season",
            text="'=already quoted",
            hashtags=(),
            call_to_action=None,
        ),
    ]

    report = parse("".join(calendar_csv(entries)).encode())

    assert report.ok, report.errors
    first, second = report.posts
    assert (first.channel, first.scheduled_at, first.local_time) == (
        "instagram",
        datetime(2027, 3, 29, 8, 0, tzinfo=UTC),
        time(10, 0),
    )
    assert (first.title, first.text, first.hashtags, first.call_to_action) == (
        "-minus",
        '=cmd, with "quotes"\nand lines',
        ("año", "sale"),
        "@mention",
    )
    assert (second.title, second.text, second.hashtags) == (
        "'Tis the season",
        "'=already quoted",
        (),
    )
