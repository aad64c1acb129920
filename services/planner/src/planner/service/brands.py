"""Brands: a name, a time zone, default channels and the voice every post follows."""

from typing import Any
from uuid import UUID

from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_platform.errors import Conflict
from bai_platform.identity import Identity
from bai_platform.pagination import decode_cursor, encode_cursor
from planner.models import Brand
from planner.schemas import BrandCreate, BrandUpdate
from planner.service._common import BrandNotFound, now


class BrandNameTaken(Conflict):
    code = "brand_name_taken"


async def create_brand(session: AsyncSession, *, identity: Identity, data: BrandCreate) -> Brand:
    """Store a brand; names are unique per workspace (case-insensitive)."""
    await _refuse_taken_name(session, tenant_id=identity.tenant_id, name=data.name)
    brand = Brand(
        tenant_id=identity.tenant_id,
        name=data.name,
        timezone=data.timezone,
        default_channels=[c.value for c in data.default_channels],
        voice=data.voice.model_dump(mode="json"),
        created_by=identity.subject,
    )
    try:
        async with session.begin_nested():
            session.add(brand)
            await session.flush()
    except IntegrityError as exc:  # a concurrent create won the name
        raise BrandNameTaken(f"a brand named {data.name!r} already exists") from exc
    await session.refresh(brand)
    return brand


async def get_brand(session: AsyncSession, *, tenant_id: UUID, brand_id: UUID) -> Brand:
    """The tenant's brand; another tenant's brand is as unknown as a missing one."""
    brand = await session.scalar(
        select(Brand).where(col(Brand.id) == brand_id, col(Brand.tenant_id) == tenant_id)
    )
    if brand is None:
        raise BrandNotFound("no such brand in this workspace")
    return brand


async def update_brand(
    session: AsyncSession, *, identity: Identity, brand_id: UUID, data: BrandUpdate
) -> Brand:
    """Change what was given (a null leaves a member as it is); the voice is replaced as a
    whole."""
    brand = await get_brand(session, tenant_id=identity.tenant_id, brand_id=brand_id)
    given = data.model_dump(exclude_unset=True, mode="json").items()
    changes: dict[str, Any] = {field: value for field, value in given if value is not None}
    if "name" in changes and changes["name"].lower() != brand.name.lower():
        await _refuse_taken_name(session, tenant_id=identity.tenant_id, name=changes["name"])
    for field, value in changes.items():
        setattr(brand, field, value)
    brand.updated_at = now()
    await session.flush()
    return brand


async def list_brands(
    session: AsyncSession, *, tenant_id: UUID, limit: int, cursor: str | None
) -> tuple[list[Brand], str | None]:
    """A page of the tenant's brands, newest first."""
    query = (
        select(Brand)
        .where(col(Brand.tenant_id) == tenant_id)
        .order_by(col(Brand.created_at).desc(), col(Brand.id).desc())
        .limit(limit + 1)
    )
    if cursor:
        created_at, row_id = decode_cursor(cursor)
        query = query.where(
            tuple_(col(Brand.created_at), col(Brand.id)) < tuple_(created_at, row_id)
        )
    rows = list((await session.scalars(query)).all())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)


async def _refuse_taken_name(session: AsyncSession, *, tenant_id: UUID, name: str) -> None:
    taken = await session.scalar(
        select(col(Brand.id)).where(
            col(Brand.tenant_id) == tenant_id, func.lower(col(Brand.name)) == name.lower()
        )
    )
    if taken is not None:
        raise BrandNameTaken(f"a brand named {name!r} already exists in this workspace")
