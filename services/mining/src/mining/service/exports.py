"""Leads out as CSV (every key collected, formula cells neutralised) and JSON Lines,
streamed from the database in batches so a large export never sits in memory."""

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from bai_platform.db import Database
from bai_platform.spreadsheets import neutralise
from mining.models import Lead

FIXED = ("organisation", "domain", "emails", "phones", "socials", "addresses", "pages")
BATCH = 500


async def data_keys(db: Database, job_id: str) -> list[str]:
    """Every key any lead of the job carries in ``data`` (the CSV's extra columns)."""
    async with db.transaction() as session:
        keys = (
            select(func.jsonb_object_keys(col(Lead.data)))
            .where(col(Lead.job_id) == job_id)
            .distinct()
        )
        return sorted(str(k) for k in (await session.scalars(keys)).all())


async def _leads(db: Database, job_id: str) -> AsyncIterator[Lead]:
    after = 0
    while True:
        async with db.transaction() as session:
            query = (
                select(Lead)
                .where(col(Lead.job_id) == job_id, col(Lead.id) > after)
                .order_by(col(Lead.id))
                .limit(BATCH)
            )
            rows = list((await session.scalars(query)).all())
        for row in rows:
            yield row
        if len(rows) < BATCH:
            return
        after = rows[-1].id


def _row(lead: Lead) -> dict[str, Any]:
    return {
        "organisation": lead.organisation,
        "domain": lead.domain,
        "emails": lead.emails,
        "phones": lead.phones,
        "socials": lead.socials,
        "addresses": lead.addresses,
        "pages": lead.pages,
        **lead.data,
    }


async def csv_chunks(db: Database, job_id: str) -> AsyncIterator[bytes]:
    columns = [*FIXED, *(k for k in await data_keys(db, job_id) if k not in FIXED)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([neutralise(column) for column in columns])  # data keys are input too
    yield b"\xef\xbb\xbf" + buffer.getvalue().encode()
    async for lead in _leads(db, job_id):
        buffer.seek(0)
        buffer.truncate()
        row = _row(lead)
        writer.writerow([neutralise(_cell(row.get(column))) for column in columns])
        yield buffer.getvalue().encode()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


async def jsonl_chunks(db: Database, job_id: str) -> AsyncIterator[bytes]:
    async for lead in _leads(db, job_id):
        yield json.dumps(_row(lead), ensure_ascii=False).encode() + b"\n"
