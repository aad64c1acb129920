"""Routes for exports and imports: a campaign's calendar as CSV or iCalendar, and posts
imported from a CSV file."""

import re
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from bai_platform.db import ReadSession, Session
from bai_platform.identity import CurrentIdentity, Editor
from bai_platform.openapi import file_answer
from planner.schemas import ImportResult, Month
from planner.service import exchange

router = APIRouter(prefix="/v1/planner", tags=["planner"])

MonthQuery = Annotated[Month | None, Query()]
CSV_TYPE = "text/csv; charset=utf-8"
_UNSAFE_IN_FILENAME = re.compile(r"[^a-z0-9]+")


def _filename(name: str, month: str | None, suffix: str) -> str:
    # ASCII only: header values are sent as latin-1, and anything else there (a campaign
    # named in Chinese, an emoji) made Starlette fail the whole download with a 500.
    safe = _UNSAFE_IN_FILENAME.sub("-", name.lower())[:60].strip("-") or "calendar"
    return f"{safe}-{month or 'all'}.{suffix}"


@router.get(
    "/campaigns/{campaign_id}/calendar.csv",
    response_class=StreamingResponse,
    responses=file_answer("text/csv", "The calendar, one row per post."),
)
async def export_csv(
    campaign_id: UUID, identity: CurrentIdentity, session: ReadSession, month: MonthQuery = None
) -> StreamingResponse:
    """The calendar as CSV; cells a spreadsheet would run as formulas are neutralised."""
    campaign, entries = await exchange.export_entries(
        session, tenant_id=identity.tenant_id, campaign_id=campaign_id, month=month
    )
    filename = _filename(campaign.name, month, "csv")
    return StreamingResponse(
        exchange.csv_chunks(entries),
        media_type=CSV_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/campaigns/{campaign_id}/calendar.ics",
    response_class=Response,
    responses=file_answer("text/calendar", "The calendar, one event per post."),
)
async def export_ics(
    campaign_id: UUID, identity: CurrentIdentity, session: ReadSession, month: MonthQuery = None
) -> Response:
    """The calendar as iCalendar (RFC 5545), one event per post."""
    campaign, entries = await exchange.export_entries(
        session, tenant_id=identity.tenant_id, campaign_id=campaign_id, month=month
    )
    filename = _filename(campaign.name, month, "ics")
    return Response(
        exchange.ics_bytes(campaign, entries),
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post(
    "/campaigns/{campaign_id}/posts/import",
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def import_posts(
    campaign_id: UUID, request: Request, identity: Editor, session: Session
) -> ImportResult:
    """Posts from a CSV (channel, scheduled_at, text, ...): all rows, or none and a report."""
    data = await request.body()
    imported = await exchange.import_posts(
        session, identity=identity, campaign_id=campaign_id, data=data
    )
    return ImportResult(imported=imported)
