"""A tenant's workflow as a service stores it: where its jobs go and the secret they are
signed with, one row per workspace (creator's engine, mining's workflow, planner's
publishing target).

Saving one checks the URL as a destination (``bai_platform.destinations``; a refusal is a
422 naming the field), encrypts the secret with the service's key for that purpose, and
inserts or replaces the workspace's row, saying who changed it. Reading and deleting, and
what a missing row answers, stay the service's.
"""

from typing import Any, Protocol

from cryptography.fernet import Fernet
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bai_platform.destinations import DestinationRefused, check_destination
from bai_platform.errors import FieldInvalid
from bai_platform.identity import Identity


class WorkflowUpdate(Protocol):
    """What a tenant sends to set its workflow (more fields are the service's)."""

    @property
    def webhook_url(self) -> object: ...

    @property
    def secret(self) -> str: ...

    @property
    def accept_secret_header(self) -> bool: ...


async def check_public(url: str, *, field: str, allow_private: bool) -> None:
    """Refuse (422 naming ``field``) a URL the workers may not call."""
    try:
        await check_destination(url, allow_private=allow_private)
    except DestinationRefused as refused:
        raise FieldInvalid(field, str(refused)) from refused


async def workflow_values(
    data: WorkflowUpdate, *, box: Fernet, allow_private: bool
) -> dict[str, object]:
    """The columns of a workflow as the tenant set it: its URL checked, its secret
    encrypted."""
    url = str(data.webhook_url)
    await check_public(url, field="webhook_url", allow_private=allow_private)
    return {
        "webhook_url": url,
        "secret": box.encrypt(data.secret.encode()),
        "accept_secret_header": data.accept_secret_header,
    }


async def save_for_tenant(
    session: AsyncSession,
    model: type[Any],
    *,
    identity: Identity,
    values: dict[str, object],
    updated_at: object = None,
) -> None:
    """Insert or replace the caller's workspace's row of ``model`` (keyed by ``tenant_id``)
    with ``values``, by the caller, at ``updated_at`` (the transaction's time unless said)."""
    values = values | {
        "updated_by": identity.subject,
        "updated_at": func.now() if updated_at is None else updated_at,
    }
    statement = insert(model).values(tenant_id=identity.tenant_id, **values)
    await session.execute(
        statement.on_conflict_do_update(index_elements=["tenant_id"], set_=values)
    )
