"""A workflow page's items merged into the job's stored leads.

An item joins the first lead of the job (stored, or made earlier from the same page) that
shares an email, a phone or a domain with it, else it makes a new lead. An item with none
of them joins a lead with one of its socials, else one of the same organisation name (case
aside). Lists keep each value
once, in the order found, capped; ``data`` keeps the first value given for each name.
"""

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, String, func, or_, select
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from mining.models import ExtractionJob, Lead
from mining.service.pages import Item

KEY_CHARS = 300
KINDS = ("email", "phone", "domain", "social", "organisation")


async def merge_items(session: AsyncSession, job: ExtractionJob, items: tuple[Item, ...]) -> None:
    """The page's items into the job's leads: new leads, or more on those they share a key."""
    index: dict[str, Lead] = {}
    for row in await _touched(session, job.id, items):
        _index(index, row)
    for item in items:
        keys = _keys(item)
        lead = next((index[k] for k in keys if k in index), None)
        if lead is None:
            lead = _new_lead(job, keys[0], item)
            session.add(lead)
        _fold(lead, item)
        _index(index, lead)
    await session.flush()


def _keys(item: Item) -> list[str]:
    """The item's keys: its emails, phones and domain; without any, its socials and name."""
    strong = _strong(item.emails, item.phones, item.domain)
    if strong:
        return strong
    return _weak(item.socials, item.organisation)


def _strong(emails: Sequence[str], phones: Sequence[str], domain: str | None) -> list[str]:
    keys = [f"email:{e}" for e in emails] + [f"phone:{p}" for p in phones]
    return keys + ([f"domain:{domain}"] if domain else [])


def _weak(socials: Sequence[str], organisation: str | None) -> list[str]:
    keys = [f"social:{s}" for s in socials]
    return keys + ([f"organisation:{organisation.lower()}"] if organisation else [])


def _index(index: dict[str, Lead], lead: Lead) -> None:
    strong = _strong(lead.emails, lead.phones, lead.domain)
    for key in strong + _weak(lead.socials, lead.organisation):
        index.setdefault(key, lead)


async def _touched(session: AsyncSession, job_id: str, items: tuple[Item, ...]) -> list[Lead]:
    """The job's stored leads the items may join (see ``_keys``)."""
    keys = {key for item in items for key in _keys(item)}
    values = {
        kind: sorted(k.split(":", 1)[1] for k in keys if k.startswith(f"{kind}:")) for kind in KINDS
    }
    columns = {
        "email": col(Lead.emails).op("&&")(_texts(values["email"])),
        "phone": col(Lead.phones).op("&&")(_texts(values["phone"])),
        "domain": col(Lead.domain).in_(values["domain"]),
        "social": col(Lead.socials).op("&&")(_texts(values["social"])),
        "organisation": func.lower(col(Lead.organisation)).in_(values["organisation"]),
    }
    conditions = [columns[kind] for kind in KINDS if values[kind]]
    if not conditions:
        return []
    query = select(Lead).where(col(Lead.job_id) == job_id, or_(*conditions)).order_by(col(Lead.id))
    return list((await session.scalars(query)).all())


def _texts(values: list[str]) -> ColumnElement[Any]:
    """``values`` as a PostgreSQL text array, for ``&&`` (overlaps) with a column."""
    return array(values, type_=String)


def _new_lead(job: ExtractionJob, key: str, item: Item) -> Lead:
    if len(key) > KEY_CHARS:  # still unique: a long email or name keeps a digest of itself
        key = key[: KEY_CHARS - 17] + "#" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return Lead(
        tenant_id=job.tenant_id,
        job_id=job.id,
        key=key,
        organisation=None,
        domain=item.domain,
        emails=[],
        phones=[],
        socials=[],
        addresses=[],
        pages=[],
        data={},
    )


def _fold(lead: Lead, item: Item) -> None:
    lead.organisation = lead.organisation or item.organisation
    lead.domain = lead.domain or item.domain
    lead.emails = _more(lead.emails, item.emails, 50)
    lead.phones = _more(lead.phones, item.phones, 50)
    lead.socials = _more(lead.socials, item.socials, 50)
    lead.addresses = _more(lead.addresses, item.addresses, 20)
    lead.pages = _more(lead.pages, (item.source,), 100)
    lead.data = {**item.data, **lead.data}  # the first value given for a name stays


def _more(kept: list[str], new: tuple[str, ...], limit: int) -> list[str]:
    """A new list (so the change is seen), each value once, at most ``limit``."""
    return list(dict.fromkeys([*kept, *new]))[:limit]


async def count_leads(session: AsyncSession, job_id: str) -> int:
    return int(await session.scalar(select(func.count()).where(col(Lead.job_id) == job_id)) or 0)
