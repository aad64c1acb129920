"""Bulk import of posts from a CSV file into one campaign.

All or nothing: ``parse_posts_csv`` checks every row and collects every error, and the caller
creates posts only when the report is ``ok``. Row numbers are the ones a spreadsheet shows:
the header is row 1, the first data row is row 2; row 0 means the file as a whole.

The columns of ``planner.service.exports.calendar_csv`` that describe another campaign's
post (its id, campaign, state, zone) are accepted and ignored, so an exported calendar can
be re-imported.
A problem with the file as a whole (encoding, header, row limit, broken quoting) is reported on
its own, without row errors that would only repeat it. The caller bounds the upload size; this
module bounds the number of rows.
"""

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import TypeVar
from zoneinfo import ZoneInfo

REQUIRED_COLUMNS = ("channel", "scheduled_at")
OPTIONAL_COLUMNS = (
    "title",
    "text",
    "hashtags",
    "call_to_action",
    "image_prompt",
    "alt_text",
)
IMPORT_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
EXPORT_ONLY_COLUMNS = frozenset({"post_id", "campaign", "local_time", "timezone", "state"})

MAX_ROWS = 2000
MAX_HASHTAGS = 30
MAX_LENGTHS = {
    "title": 200,
    "text": 5000,
    "call_to_action": 300,
    "image_prompt": 1000,
    "alt_text": 1000,
}

_SCHEDULED_AT = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[T ](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})"
    r"(?::(?P<second>[0-9]{2}))?(?P<offset>Z|[+-][0-9]{2}:?[0-9]{2})?",
    re.IGNORECASE,
)
_HASHTAG = re.compile(r"\w{1,100}")
_HASHTAG_SEPARATORS = re.compile(r"[\s,]+")
# What planner.service.exports.neutralise adds a quote to; the import takes exactly one
# quote off again.
_NEUTRALISED = re.compile(r"'+[=+\-@\t\r]")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ImportedPost:
    """A valid row, ready to become a draft post in the campaign."""

    row: int
    channel: str
    scheduled_at: datetime  # aware UTC
    local_date: date  # in the campaign zone
    local_time: time
    title: str | None
    text: str | None
    hashtags: tuple[str, ...]  # without '#', deduplicated, order kept
    call_to_action: str | None
    image_prompt: str | None
    alt_text: str | None


@dataclass(frozen=True, slots=True)
class RowError:
    """Why a row (or, for row 0, the whole file) cannot be imported."""

    row: int
    column: str | None
    message: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    posts: tuple[ImportedPost, ...]
    errors: tuple[RowError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class _Rules:
    tz: ZoneInfo
    channels: dict[str, str]  # casefolded name -> the campaign's spelling
    starts_on: date | None
    ends_on: date | None


class _FileError(Exception):
    """The file cannot be read row by row; these errors are the whole report."""

    def __init__(self, *errors: RowError) -> None:
        super().__init__(errors)
        self.errors = errors


class _Invalid(ValueError):
    """One cell's value is not acceptable; the message is shown to the user."""


def parse_posts_csv(
    data: bytes,
    *,
    tz: ZoneInfo,
    channels: frozenset[str],
    starts_on: date | None,
    ends_on: date | None,
    max_rows: int = MAX_ROWS,
) -> ImportReport:
    """Check every row of an uploaded CSV; posts come only from rows without errors."""
    rules = _Rules(tz, {name.casefold(): name for name in channels}, starts_on, ends_on)
    try:
        columns, rows = _read(_decode(data), max_rows)
    except _FileError as failure:
        return ImportReport(posts=(), errors=failure.errors)
    posts: list[ImportedPost] = []
    errors: list[RowError] = []
    slots: dict[tuple[str, datetime], int] = {}
    for number, record in rows:
        post, row_errors = _parse_row(number, _cells(record, columns), rules, slots)
        errors.extend(row_errors)
        if post is not None and not row_errors:
            posts.append(post)
    return ImportReport(posts=tuple(posts), errors=tuple(errors))


def _decode(data: bytes) -> str:
    # utf-8-sig drops the byte order mark Excel writes with "CSV UTF-8".
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        message = f"the file is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        raise _FileError(RowError(0, None, message)) from exc


def _read(text: str, max_rows: int) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The normalised header and the numbered non-empty data rows."""
    records = _records(text)
    first = next(records, None)
    if first is None:
        raise _FileError(RowError(0, None, "the file is empty"))
    header_row, header = first
    columns = [name.strip().lower() for name in header]
    _check_header(header_row, columns)
    rows: list[tuple[int, list[str]]] = []
    for numbered in records:
        # Stop reading at the limit so an oversized file costs no more than an accepted one.
        if len(rows) == max_rows:
            raise _FileError(RowError(0, None, f"too many rows: at most {max_rows} per import"))
        rows.append(numbered)
    if not rows:
        raise _FileError(RowError(0, None, "the file has a header but no posts"))
    return columns, rows


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """Numbered CSV records, skipping blank ones (which still count as spreadsheet rows)."""
    # strict: a stray quote is reported instead of silently merging or splitting cells.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    number = 0
    try:
        for number, record in enumerate(reader, start=1):
            if any(cell.strip() for cell in record):
                yield number, record
    except csv.Error as exc:
        raise _FileError(RowError(number + 1, None, f"not valid CSV: {exc}")) from exc


def _check_header(row: int, columns: list[str]) -> None:
    known = set(IMPORT_COLUMNS) | EXPORT_ONLY_COLUMNS
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    unknown = [name for name in columns if name and name not in known]
    repeated = sorted({name for name in columns if name and columns.count(name) > 1})
    expected = ", ".join(IMPORT_COLUMNS)
    errors = [RowError(row, name, f"the required column {name} is missing") for name in missing]
    errors += [
        RowError(row, name, f"unknown column {name!r}; the columns are: {expected}")
        for name in unknown
    ]
    errors += [RowError(row, name, f"the column {name} is given twice") for name in repeated]
    if errors:
        raise _FileError(*errors)


def _cells(record: list[str], columns: list[str]) -> dict[str | None, list[str]]:
    """The row's cells by column; None gathers cells under a blank or missing header."""
    cells: dict[str | None, list[str]] = {}
    for index, cell in enumerate(record):
        column = columns[index] if index < len(columns) else ""
        cells.setdefault(column or None, []).append(cell)
    return cells


def _parse_row(
    number: int,
    cells: dict[str | None, list[str]],
    rules: _Rules,
    slots: dict[tuple[str, datetime], int],
) -> tuple[ImportedPost | None, list[RowError]]:
    errors = _stray_cells(number, cells)

    def field(column: str, parse: Callable[[str], _T]) -> _T | None:
        raw = _restore(cells.get(column, [""])[0])
        try:
            if "\x00" in raw:
                raise _Invalid("contains a NUL character")
            return parse(raw)
        except _Invalid as exc:
            errors.append(RowError(number, column, str(exc)))
            return None

    channel = field("channel", lambda raw: _channel(raw, rules.channels))
    moment = field("scheduled_at", lambda raw: _scheduled_at(raw, rules))
    if channel is not None and moment is not None:
        earlier = slots.setdefault((channel, moment), number)
        if earlier != number:
            message = f"{channel} already has a post at this time in row {earlier}"
            errors.append(RowError(number, "scheduled_at", message))
    texts = {column: field(column, _text(limit)) for column, limit in MAX_LENGTHS.items()}
    hashtags = field("hashtags", _hashtags)
    if errors or channel is None or moment is None or hashtags is None:
        return None, errors
    local = moment.astimezone(rules.tz)
    post = ImportedPost(
        row=number,
        channel=channel,
        scheduled_at=moment,
        local_date=local.date(),
        local_time=local.time(),
        title=texts["title"],
        text=texts["text"],
        hashtags=hashtags,
        call_to_action=texts["call_to_action"],
        image_prompt=texts["image_prompt"],
        alt_text=texts["alt_text"],
    )
    return post, errors


def _stray_cells(number: int, cells: dict[str | None, list[str]]) -> list[RowError]:
    """Errors for what the header does not cover: NULs in ignored columns, headerless values."""
    errors = []
    for column, values in cells.items():
        if column in IMPORT_COLUMNS:
            continue  # checked by the field parsers
        if any("\x00" in value for value in values):
            errors.append(RowError(number, column, "contains a NUL character"))
        elif column is None and any(value.strip() for value in values):
            errors.append(RowError(number, None, "has a value in a column without a header"))
    return errors


def _restore(cell: str) -> str:
    """Undo the export's formula neutralisation so a round trip is lossless."""
    return cell[1:] if _NEUTRALISED.match(cell) else cell


def _channel(raw: str, allowed: dict[str, str]) -> str:
    value = raw.strip()
    if not value:
        raise _Invalid("channel is required")
    if value.casefold() not in allowed:
        names = ", ".join(sorted(allowed.values())) or "none"
        raise _Invalid(f"unknown channel {value!r}; the campaign's channels are: {names}")
    return allowed[value.casefold()]


def _scheduled_at(raw: str, rules: _Rules) -> datetime:
    """The moment in UTC; wall times without an offset are in the campaign zone."""
    value = raw.strip()
    if not value:
        raise _Invalid("scheduled_at is required")
    match = _SCHEDULED_AT.fullmatch(value)
    if match is None:
        raise _Invalid(
            f"{value!r} is not a date and time like 2027-03-29 10:00 or 2027-03-29T10:00:00+02:00"
        )
    wall = _wall_time(match, value)
    offset = match["offset"]
    moment = wall.replace(tzinfo=_offset(offset)) if offset else _in_zone(wall, rules.tz)
    local_day = moment.astimezone(rules.tz).date()
    if rules.starts_on is not None and local_day < rules.starts_on:
        raise _Invalid(f"{local_day} is before the campaign starts ({rules.starts_on})")
    if rules.ends_on is not None and local_day > rules.ends_on:
        raise _Invalid(f"{local_day} is after the campaign ends ({rules.ends_on})")
    return moment.astimezone(UTC)


def _wall_time(match: re.Match[str], value: str) -> datetime:
    try:
        day = date.fromisoformat(match["date"])
        clock = time(int(match["hour"]), int(match["minute"]), int(match["second"] or 0))
    except ValueError as exc:
        raise _Invalid(f"{value!r} is not a real date and time") from exc
    return datetime.combine(day, clock)


def _offset(text: str) -> timezone:
    if text.upper() == "Z":
        return UTC
    digits = text[1:].replace(":", "")
    size = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    if size >= timedelta(hours=24) or int(digits[2:]) >= 60:
        raise _Invalid(f"{text!r} is not a valid UTC offset")
    return timezone(-size if text.startswith("-") else size)


def _in_zone(wall: datetime, tz: ZoneInfo) -> datetime:
    """Attach the zone, refusing wall times that a clock change skips or repeats."""
    first, second = wall.replace(tzinfo=tz, fold=0), wall.replace(tzinfo=tz, fold=1)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
        raise _Invalid(f"{wall:%Y-%m-%d %H:%M} does not exist in {tz.key} (the clocks go forward)")
    if first.utcoffset() != second.utcoffset():
        raise _Invalid(
            f"{wall:%Y-%m-%d %H:%M} happens twice in {tz.key} (the clocks go back);"
            " add the offset, e.g. +02:00"
        )
    return first


def _text(limit: int) -> Callable[[str], str | None]:
    """A parser for a free-text cell: kept as written, blank means absent."""

    def parse(raw: str) -> str | None:
        if not raw.strip():
            return None
        if len(raw) > limit:
            raise _Invalid(f"is {len(raw)} characters long; at most {limit} are allowed")
        return raw

    return parse


def _hashtags(raw: str) -> tuple[str, ...]:
    tags: dict[str, str] = {}  # casefolded -> first spelling; dicts keep insertion order
    bad: list[str] = []
    for token in _HASHTAG_SEPARATORS.split(raw):
        if not token:
            continue
        # NFC so a letter typed as base + combining accent still counts as one word character.
        tag = unicodedata.normalize("NFC", token.removeprefix("#"))
        if _HASHTAG.fullmatch(tag):
            tags.setdefault(tag.casefold(), tag)
        else:
            bad.append(token)
    if bad:
        raise _Invalid(
            f"invalid hashtags: {' '.join(bad)}; use letters, digits and _ (at most 100 each)"
        )
    if len(tags) > MAX_HASHTAGS:
        raise _Invalid(f"{len(tags)} hashtags; at most {MAX_HASHTAGS} are allowed")
    return tuple(tags.values())
