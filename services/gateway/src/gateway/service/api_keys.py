"""API keys for integrations: ``bai_<prefix>_<secret>``, shown once, stored as a digest.

The prefix is public and indexed, so a key is found with one lookup; the secret is
compared by digest in constant time. Keys are tenant-scoped, carry a role (editor or
viewer) and service scopes, may expire, and are revoked by setting ``revoked_at``.
"""

import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import Depends
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_platform.access import ADMINS
from bai_platform.errors import NotFound
from bai_platform.identity import Identity, RequireRole
from gateway.errors import InvalidToken
from gateway.models import ApiKey
from gateway.schemas import ApiKeyCreate
from gateway.service.tokens import token_digest

KEY_MARK = "bai"
# last_used_at is a hint for people, not an audit log: one write a minute per key is enough.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


def _new_key() -> tuple[str, str]:
    """A fresh (prefix, full key)."""
    prefix = secrets.token_hex(6)
    return prefix, f"{KEY_MARK}_{prefix}_{secrets.token_urlsafe(32)}"


def looks_like_api_key(token: str) -> bool:
    return token.startswith(f"{KEY_MARK}_")


def _prefix_of(token: str) -> str:
    mark, _, rest = token.partition("_")
    prefix, _, secret = rest.partition("_")
    if mark != KEY_MARK or not prefix or not secret:
        raise InvalidToken("the API key is malformed")
    return prefix


# The routes that manage keys ask for this (``identity: KeyManager``).
KeyManager = Annotated[
    Identity,
    Depends(RequireRole(*ADMINS, people_only="API keys are managed by people, not by other keys")),
]


async def create_api_key(
    session: AsyncSession, *, identity: Identity, data: ApiKeyCreate
) -> tuple[ApiKey, str]:
    """Create a key for the caller's workspace; the full key is returned only here."""
    prefix, key = _new_key()
    expires_at = (
        datetime.now(UTC) + timedelta(days=data.expires_in_days) if data.expires_in_days else None
    )
    row = ApiKey(
        tenant_id=identity.tenant_id,
        created_by=UUID(identity.subject),
        name=data.name,
        prefix=prefix,
        secret_hash=token_digest(key),
        role=data.role,
        scopes=sorted(data.scopes),
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return row, key


async def list_api_keys(session: AsyncSession, *, identity: Identity) -> list[ApiKey]:
    query = (
        select(ApiKey)
        .where(col(ApiKey.tenant_id) == identity.tenant_id)
        .order_by(col(ApiKey.created_at).desc(), col(ApiKey.id))
    )
    return list((await session.scalars(query)).all())


async def revoke_api_key(session: AsyncSession, *, identity: Identity, key_id: UUID) -> ApiKey:
    """Revoke one of the workspace's keys; another workspace's key is not found."""
    row = await session.scalar(
        select(ApiKey).where(col(ApiKey.id) == key_id, col(ApiKey.tenant_id) == identity.tenant_id)
    )
    if row is None:
        raise ApiKeyNotFound("no such API key in this workspace")
    row.revoked_at = row.revoked_at or datetime.now(UTC)
    return row


async def authenticate(session: AsyncSession, token: str) -> ApiKey:
    """The live key behind ``token``; anything else is one indistinct 401."""
    row = await session.scalar(select(ApiKey).where(col(ApiKey.prefix) == _prefix_of(token)))
    now = datetime.now(UTC)
    valid = row is not None and hmac.compare_digest(row.secret_hash, token_digest(token))
    if row is None or not valid or row.revoked_at or (row.expires_at and row.expires_at <= now):
        raise InvalidToken("the API key is not valid")
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        await session.execute(
            update(ApiKey).where(col(ApiKey.id) == row.id).values(last_used_at=now)
        )
    return row
