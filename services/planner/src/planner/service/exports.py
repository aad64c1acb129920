"""Calendar exports: a spreadsheet-safe CSV stream and an RFC 5545 iCalendar file.

Pure functions over ``CalendarEntry`` values; the API layer loads the entries and sends the
result. ``planner.service.imports`` reads the CSV back, so the two modules agree on the
columns and on how formula cells are neutralised.
"""

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vText

from bai_platform.spreadsheets import neutralise

CSV_COLUMNS = (
    "post_id",
    "campaign",
    "channel",
    "scheduled_at",
    "local_time",
    "timezone",
    "state",
    "title",
    "text",
    "hashtags",
    "call_to_action",
)

DEFAULT_PRODID = "-//B.A.I.//planner//EN"
EVENT_DURATION = timedelta(minutes=30)
SUMMARY_TEXT_CHARS = 60

_CONFIRMED = frozenset({"approved", "scheduled", "published"})
_CANCELLED = frozenset({"rejected"})


@dataclass(frozen=True, slots=True)
class CalendarEntry:
    """One scheduled post as it appears in an exported calendar."""

    post_id: UUID
    campaign: str
    channel: str
    scheduled_at: datetime  # aware; written in UTC
    timezone: str  # the brand's IANA zone, e.g. "Europe/Madrid"
    state: str
    title: str | None
    text: str | None
    hashtags: tuple[str, ...]
    call_to_action: str | None


def calendar_csv(entries: Iterable[CalendarEntry]) -> Iterator[str]:
    """Yield the CSV header, then one chunk per entry, pulling entries only as chunks are taken.

    RFC 4180: minimal quoting, CRLF line endings. Every cell is neutralised.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield _drain(buffer)
    for entry in entries:
        writer.writerow([neutralise(cell) for cell in _csv_cells(entry)])
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    """Take what the writer has written so far and empty the buffer (keeps memory flat)."""
    chunk = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return chunk


def _csv_cells(entry: CalendarEntry) -> tuple[str, ...]:
    at = _utc(entry.scheduled_at)
    return (
        str(entry.post_id),
        entry.campaign,
        entry.channel,
        at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        at.astimezone(ZoneInfo(entry.timezone)).isoformat(timespec="seconds"),
        entry.timezone,
        entry.state,
        entry.title or "",
        entry.text or "",
        _hashtag_line(entry.hashtags),
        entry.call_to_action or "",
    )


def _utc(moment: datetime) -> datetime:
    # A naive datetime would silently be read as the server's local time.
    if moment.tzinfo is None:
        raise ValueError(f"scheduled_at must be timezone-aware, got {moment.isoformat()}")
    return moment.astimezone(UTC)


def _hashtag_line(hashtags: Iterable[str]) -> str:
    return " ".join("#" + tag.removeprefix("#") for tag in hashtags)


def calendar_ics(
    entries: Iterable[CalendarEntry],
    *,
    name: str,
    prodid: str = DEFAULT_PRODID,
    stamp: datetime | None = None,
) -> bytes:
    """An RFC 5545 VCALENDAR with one 30-minute VEVENT per entry, all times in UTC.

    ``stamp`` is the DTSTAMP of every event (default: now); pass it for reproducible output.
    """
    calendar = Calendar()
    calendar.add("prodid", prodid)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    # icalendar escapes an X- property (TEXT by default) only when handed a vText; a calendar
    # name is one line, and an unescaped newline would make to_ical fail.
    calendar.add("x-wr-calname", vText(" ".join(name.split())))
    dtstamp = _utc(stamp) if stamp is not None else datetime.now(UTC)
    for entry in entries:
        calendar.add_component(_event(entry, dtstamp))
    payload: bytes = calendar.to_ical()  # icalendar leaves to_ical unannotated
    return payload


def _event(entry: CalendarEntry, dtstamp: datetime) -> Event:
    event = Event()
    event.add("uid", f"{entry.post_id}@bai")
    event.add("dtstamp", dtstamp)
    event.add("dtstart", _utc(entry.scheduled_at))
    event.add("duration", EVENT_DURATION)
    event.add("summary", _summary(entry))
    description = _description(entry)
    if description:
        event.add("description", description)
    event.add("status", _status(entry.state))
    event.add("categories", [entry.channel])
    return event


def _summary(entry: CalendarEntry) -> str:
    # Whitespace is collapsed so a multi-line text still gives a one-line calendar title.
    excerpt = " ".join((entry.text or "").split())[:SUMMARY_TEXT_CHARS]
    return f"{entry.channel}: {entry.title or excerpt or 'Post'}"


def _description(entry: CalendarEntry) -> str:
    parts = (entry.text, _hashtag_line(entry.hashtags), entry.call_to_action)
    return "\n\n".join(part for part in parts if part)


def _status(state: str) -> str:
    if state in _CONFIRMED:
        return "CONFIRMED"
    if state in _CANCELLED:
        return "CANCELLED"
    return "TENTATIVE"
