"""Calendar exports (CSV, iCalendar) and the all-or-nothing CSV import, over HTTP."""

import csv
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID, uuid4

import httpx
import jwt
import pytest
from icalendar import Calendar
from sqlalchemy import select
from sqlmodel import col

from bai_contracts import PostGenerationRequested
from bai_platform.db import Database
from bai_platform.envelope import Envelope
from bai_platform.identity import IDENTITY_HEADER
from planner.models import Post, PostTransition
from planner.service.exports import CSV_COLUMNS

from .conftest import new_campaign, posts_of, schedule, write_drafts

IdentityFor = Callable[[UUID, str], dict[str, str]]
OutboxOf = Callable[[UUID], Awaitable[list[tuple[str, Envelope]]]]
BrandFor = Callable[[UUID], Awaitable[str]]

DECEMBER, JANUARY = "2026-12", "2027-01"
CAMPAIGNS = "/v1/planner/campaigns"
BOM = b"\xef\xbb\xbf"
FORMULA = '=HYPERLINK("http://evil")'
CSV_HEADERS = {"content-type": "text/csv"}
# Instagram on Mondays, Facebook on Mondays and Thursdays; 10:00 unless told.
WINTER = {"instagram": {"per_week": 1}, "facebook": {"per_week": 2}}


# ---- helpers ---------------------------------------------------------------------------
async def edit(
    client: httpx.AsyncClient, headers: dict[str, str], post_id: UUID, **body: Any
) -> None:
    response = await client.patch(f"/v1/planner/posts/{post_id}", json=body, headers=headers)
    assert response.status_code == 200, response.text


async def import_csv(
    client: httpx.AsyncClient, headers: dict[str, str], campaign_id: str, data: bytes
) -> httpx.Response:
    return await client.post(
        f"{CAMPAIGNS}/{campaign_id}/posts/import",
        content=data,
        headers={**headers, **CSV_HEADERS},
    )


def csv_bytes(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


def csv_rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def subject_of(headers: dict[str, str]) -> str:
    claims = jwt.decode(headers[IDENTITY_HEADER], options={"verify_signature": False})
    return str(claims["sub"])


@pytest.fixture
def editor(tenant: UUID, identity_for: IdentityFor) -> dict[str, str]:
    return identity_for(tenant, "editor")


@pytest.fixture
async def campaign(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    editor: dict[str, str],
    brand: str,
) -> str:
    """December and January laid out, every post a draft."""
    campaign_id = await new_campaign(client, editor, brand, cadence=WINTER)
    for month in (DECEMBER, JANUARY):
        await schedule(client, editor, campaign_id, month)
    await write_drafts(planner_db, tenant, campaign_id)
    assert {p.state for p in await posts_of(planner_db, campaign_id)} == {"draft_ready"}
    return campaign_id


@pytest.fixture
async def empty_campaign(client: httpx.AsyncClient, editor: dict[str, str], brand: str) -> str:
    """A campaign with no posts yet, to import into."""
    return await new_campaign(client, editor, brand, "Imported", cadence=WINTER)


# ---- exports ---------------------------------------------------------------------------
async def test_csv_export_is_an_attachment_starting_with_a_bom_and_the_header(
    client: httpx.AsyncClient, editor: dict[str, str], campaign: str
) -> None:
    response = await client.get(
        f"{CAMPAIGNS}/{campaign}/calendar.csv", params={"month": DECEMBER}, headers=editor
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        'attachment; filename="winter-menu-2026-12.csv"'
    )
    assert response.content.startswith(BOM + ",".join(CSV_COLUMNS).encode() + b"\r\n")


async def test_csv_export_of_a_month_has_only_that_months_posts(
    client: httpx.AsyncClient, planner_db: Database, editor: dict[str, str], campaign: str
) -> None:
    response = await client.get(
        f"{CAMPAIGNS}/{campaign}/calendar.csv", params={"month": DECEMBER}, headers=editor
    )

    assert response.status_code == 200, response.text
    december = await posts_of(planner_db, campaign, DECEMBER)
    rows = csv_rows(response.content)
    assert sorted(r["post_id"] for r in rows) == sorted(str(p.id) for p in december)
    assert len(rows) < len(await posts_of(planner_db, campaign))
    by_id = {str(p.id): p for p in december}
    for row in rows:
        post = by_id[row["post_id"]]
        assert row["scheduled_at"] == post.scheduled_at.astimezone(UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        assert (row["channel"], row["text"], row["state"]) == (
            post.channel,
            post.text,
            "draft_ready",
        )


async def test_csv_export_neutralises_formulas_and_writes_hashtags_with_hashes(
    client: httpx.AsyncClient, planner_db: Database, editor: dict[str, str], campaign: str
) -> None:
    [first, *_] = await posts_of(planner_db, campaign, DECEMBER)
    await edit(client, editor, first.id, text=FORMULA, hashtags=["a", "#b"])

    response = await client.get(
        f"{CAMPAIGNS}/{campaign}/calendar.csv", params={"month": DECEMBER}, headers=editor
    )

    assert response.status_code == 200, response.text
    [row] = [r for r in csv_rows(response.content) if r["post_id"] == str(first.id)]
    assert row["text"] == "'" + FORMULA
    assert row["hashtags"] == "#a #b"


async def test_csv_export_of_a_campaign_with_a_non_latin_name_has_an_ascii_filename(
    client: httpx.AsyncClient, editor: dict[str, str], brand: str
) -> None:
    campaign = await new_campaign(
        client, editor, brand, "Navidad 夏季 促销 🎄 café", cadence=WINTER
    )

    response = await client.get(
        f"{CAMPAIGNS}/{campaign}/calendar.csv", params={"month": DECEMBER}, headers=editor
    )

    assert response.status_code == 200, response.text
    disposition = response.headers["content-disposition"]
    assert disposition.isascii()
    assert 'filename="navidad-caf-2026-12.csv"' in disposition


async def test_ics_export_has_one_event_per_post_at_its_utc_time(
    client: httpx.AsyncClient, planner_db: Database, editor: dict[str, str], campaign: str
) -> None:
    response = await client.get(
        f"{CAMPAIGNS}/{campaign}/calendar.ics", params={"month": DECEMBER}, headers=editor
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/calendar")
    assert response.headers["content-disposition"] == (
        'attachment; filename="winter-menu-2026-12.ics"'
    )
    events = list(Calendar.from_ical(response.content).walk("VEVENT"))
    december = await posts_of(planner_db, campaign, DECEMBER)
    assert len(events) == len(december)
    starts = {str(e["UID"]): e.decoded("DTSTART") for e in events}
    assert starts == {f"{p.id}@bai": p.scheduled_at.astimezone(UTC) for p in december}
    assert all(start.utcoffset().total_seconds() == 0 for start in starts.values())


@pytest.mark.parametrize("calendar", ["calendar.csv", "calendar.ics"])
async def test_an_export_of_a_month_before_year_one_is_422(
    client: httpx.AsyncClient, editor: dict[str, str], campaign: str, calendar: str
) -> None:
    url = f"{CAMPAIGNS}/{campaign}/{calendar}"
    response = await client.get(url, params={"month": "0000-01"}, headers=editor)

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["query", "month"]


@pytest.mark.parametrize("calendar", ["calendar.csv", "calendar.ics"])
async def test_exports_of_another_tenants_campaign_are_404(
    client: httpx.AsyncClient,
    planner_db: Database,
    identity_for: IdentityFor,
    campaign: str,
    calendar: str,
) -> None:
    [first, *_] = await posts_of(planner_db, campaign)

    response = await client.get(
        f"{CAMPAIGNS}/{campaign}/{calendar}",
        params={"month": DECEMBER},
        headers=identity_for(uuid4(), "owner"),
    )

    assert response.status_code == 404, response.text
    assert response.json()["code"] == "campaign_not_found"
    assert first.text is not None
    assert first.text not in response.text


# ---- imports ---------------------------------------------------------------------------
async def test_a_valid_import_makes_drafts_of_rows_with_text_and_asks_for_the_rest(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    editor: dict[str, str],
    outbox_of: OutboxOf,
    empty_campaign: str,
) -> None:
    data = csv_bytes(
        "channel,scheduled_at,text,hashtags",
        "instagram,2026-12-02 18:30,Mulled wine is back,#winter #wine",
        "facebook,2026-12-02 18:30,,",
        "instagram,2027-07-01 09:15,Summer terrace,",
    )

    response = await import_csv(client, editor, empty_campaign, data)

    assert response.status_code == 201, response.text
    assert response.json() == {"imported": 3}
    asked, wine, summer = await posts_of(planner_db, empty_campaign)  # facebook sorts first
    # Winter wall times are UTC+1 in Madrid, summer ones UTC+2.
    assert (wine.channel, wine.scheduled_at) == (
        "instagram",
        datetime(2026, 12, 2, 17, 30, tzinfo=UTC),
    )
    assert (asked.channel, asked.scheduled_at) == ("facebook", wine.scheduled_at)
    assert summer.scheduled_at == datetime(2027, 7, 1, 7, 15, tzinfo=UTC)
    assert (wine.local_date, wine.local_time) == (date(2026, 12, 2), time(18, 30))
    assert (wine.state, wine.origin, wine.text) == ("draft_ready", "import", "Mulled wine is back")
    assert wine.hashtags == ["winter", "wine"]
    assert (summer.state, summer.origin) == ("draft_ready", "import")
    assert (asked.state, asked.origin, asked.text) == ("generating", "import", None)
    requests = [
        e.payload(PostGenerationRequested)
        for subject, e in await outbox_of(tenant)
        if subject == PostGenerationRequested.subject
    ]
    assert [(r.post_id, r.request_id) for r in requests] == [
        (asked.id, asked.generation_request_id)
    ]


async def test_imported_posts_have_a_history_naming_the_importer(
    client: httpx.AsyncClient, planner_db: Database, editor: dict[str, str], empty_campaign: str
) -> None:
    data = csv_bytes("channel,scheduled_at,text", "instagram,2026-12-02 18:30,Mulled wine")

    response = await import_csv(client, editor, empty_campaign, data)

    assert response.status_code == 201, response.text
    [post] = await posts_of(planner_db, empty_campaign)
    async with planner_db.transaction() as session:
        query = select(PostTransition).where(col(PostTransition.post_id) == post.id)
        [created] = (await session.scalars(query)).all()
    assert (created.from_state, created.to_state) == (None, "draft_ready")
    assert created.actor == f"user:{subject_of(editor)}"


async def test_an_import_with_bad_rows_is_422_listing_them_and_imports_nothing(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    editor: dict[str, str],
    outbox_of: OutboxOf,
    empty_campaign: str,
) -> None:
    data = csv_bytes(
        "channel,scheduled_at,text,hashtags",
        "instagram,2026-12-02 18:30,A valid row,",
        "myspace,2026-12-03 18:30,Unknown channel,",
        "instagram,next friday,Not a time,",
        "facebook,2026-12-04 18:30,Bad tags,#ok #not-ok",
        "facebook,2026-12-05 18:30,Another valid row,",
    )
    events = await outbox_of(tenant)

    response = await import_csv(client, editor, empty_campaign, data)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "import_rejected"
    assert [(e["row"], e["column"]) for e in problem["errors"]] == [
        (3, "channel"),
        (4, "scheduled_at"),
        (5, "hashtags"),
    ]
    assert all(e["message"] for e in problem["errors"])
    assert await posts_of(planner_db, empty_campaign) == []
    assert await outbox_of(tenant) == events


async def test_an_import_into_a_slot_that_already_has_a_post_is_422_naming_the_row(
    client: httpx.AsyncClient,
    planner_db: Database,
    editor: dict[str, str],
    campaign: str,
) -> None:
    before = await posts_of(planner_db, campaign)
    monday = next(p for p in before if p.channel == "instagram")
    thursday = next(p for p in before if p.channel == "facebook" and p.local_date.weekday() == 3)
    in_utc = thursday.scheduled_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = csv_bytes(
        "channel,scheduled_at,text",
        f"instagram,{monday.local_date} 19:45,A free evening slot",
        f"instagram,{monday.local_date} {monday.local_time:%H:%M},The morning slot is taken",
        f"Facebook,{in_utc},A taken slot written in UTC",
    )

    response = await import_csv(client, editor, campaign, data)

    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "import_rejected"
    assert [(e["row"], e["column"]) for e in problem["errors"]] == [
        (3, "scheduled_at"),
        (4, "scheduled_at"),
    ]
    after = await posts_of(planner_db, campaign)
    assert [(p.id, p.state, p.text) for p in after] == [(p.id, p.state, p.text) for p in before]


async def test_two_rows_at_the_same_wall_time_on_the_night_clocks_go_back_are_422(
    client: httpx.AsyncClient, planner_db: Database, editor: dict[str, str], empty_campaign: str
) -> None:
    # 02:30 happens twice in Madrid on 2027-10-31: two instants, but one calendar slot.
    data = csv_bytes(
        "channel,scheduled_at,text",
        "instagram,2027-10-31T02:30:00+02:00,Summer time",
        "instagram,2027-10-31T02:30:00+01:00,Winter time",
        "facebook,2027-10-31T02:30:00+01:00,Another channel is another slot",
    )

    response = await import_csv(client, editor, empty_campaign, data)

    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "import_rejected"
    assert [(e["row"], e["column"]) for e in problem["errors"]] == [(3, "scheduled_at")]
    assert "row 2" in problem["errors"][0]["message"]
    assert await posts_of(planner_db, empty_campaign) == []


async def test_an_exported_calendar_imports_into_another_campaign_unchanged(
    client: httpx.AsyncClient,
    planner_db: Database,
    editor: dict[str, str],
    campaign: str,
    empty_campaign: str,
) -> None:
    first, second, third, *_ = await posts_of(planner_db, campaign, DECEMBER)
    await edit(client, editor, first.id, text=FORMULA)
    await edit(client, editor, second.id, text="'=already quoted", title="-2 for 1")
    await edit(client, editor, third.id, text='Line one, "quoted"\nline two')
    exported = await client.get(
        f"{CAMPAIGNS}/{campaign}/calendar.csv", params={"month": DECEMBER}, headers=editor
    )
    assert exported.status_code == 200, exported.text

    response = await import_csv(client, editor, empty_campaign, exported.content)

    assert response.status_code == 201, response.text
    original = await posts_of(planner_db, campaign, DECEMBER)
    assert response.json() == {"imported": len(original)}

    def content(posts: list[Post]) -> list[tuple[Any, ...]]:
        return [
            (
                p.channel,
                p.scheduled_at,
                p.local_date,
                p.local_time,
                p.title,
                p.text,
                p.hashtags,
                p.call_to_action,
                p.state,
            )
            for p in posts
        ]

    copied = await posts_of(planner_db, empty_campaign)
    assert content(copied) == content(original)
    assert {p.text for p in copied} >= {FORMULA, "'=already quoted"}


async def test_a_viewer_cannot_import(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    identity_for: IdentityFor,
    empty_campaign: str,
) -> None:
    data = csv_bytes("channel,scheduled_at,text", "instagram,2026-12-02 18:30,Mulled wine")

    response = await import_csv(client, identity_for(tenant, "viewer"), empty_campaign, data)

    assert response.status_code == 403, response.text
    assert response.json()["code"] == "forbidden"
    assert await posts_of(planner_db, empty_campaign) == []


async def test_another_tenant_cannot_import_into_the_campaign(
    client: httpx.AsyncClient,
    planner_db: Database,
    identity_for: IdentityFor,
    empty_campaign: str,
) -> None:
    data = csv_bytes("channel,scheduled_at,text", "instagram,2026-12-02 18:30,Mulled wine")

    response = await import_csv(client, identity_for(uuid4(), "owner"), empty_campaign, data)

    assert response.status_code == 404, response.text
    assert await posts_of(planner_db, empty_campaign) == []


@pytest.mark.parametrize("state", ["archived", "completed"])
async def test_a_closed_campaign_takes_no_imports(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    editor: dict[str, str],
    outbox_of: OutboxOf,
    empty_campaign: str,
    state: str,
) -> None:
    # Like laying a month out: a finished campaign gets no new posts or generation requests.
    url = f"{CAMPAIGNS}/{empty_campaign}"
    for step in ("active", state) if state == "completed" else (state,):
        closed = await client.patch(url, json={"state": step}, headers=editor)
        assert closed.status_code == 200, closed.text
    events = await outbox_of(tenant)
    data = csv_bytes("channel,scheduled_at,text", "instagram,2026-12-02 18:30,")

    response = await import_csv(client, editor, empty_campaign, data)

    assert response.status_code == 409, response.text
    assert response.json()["code"] == "campaign_closed"
    assert await posts_of(planner_db, empty_campaign) == []
    assert await outbox_of(tenant) == events


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(BOM, id="only-a-bom"),
        pytest.param(csv_bytes("channel,scheduled_at,text"), id="only-a-header"),
    ],
)
async def test_an_import_without_rows_is_422_and_imports_nothing(
    client: httpx.AsyncClient,
    planner_db: Database,
    editor: dict[str, str],
    empty_campaign: str,
    data: bytes,
) -> None:
    response = await import_csv(client, editor, empty_campaign, data)

    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "import_rejected"
    assert [e["row"] for e in problem["errors"]] == [0]
    assert await posts_of(planner_db, empty_campaign) == []
