"""Billing's handlers for other services' events; each runs inside the inbox transaction."""

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import TenantCreated
from bai_platform.envelope import Envelope
from billing.service import credits


def on_tenant_created(
    starter: dict[str, int],
) -> Callable[[AsyncSession, Envelope], Awaitable[None]]:
    """A new workspace gets the starter grant, once (keyed by the workspace)."""

    async def handle(session: AsyncSession, envelope: Envelope) -> None:
        await credits.grant_starter(session, envelope.payload(TenantCreated).tenant_id, starter)

    return handle
