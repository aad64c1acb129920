"""Mining's consumers: what it does with other services' events."""

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import CallbackReceived
from bai_platform.envelope import Envelope
from mining.service import n8n


async def on_workflow_callback(session: AsyncSession, envelope: Envelope) -> None:
    """A mining workflow reported on an ``n8n`` job (the gateway verified its signature)."""
    callback = envelope.payload(CallbackReceived)
    assert envelope.tenantid is not None, "verified callbacks always carry the tenant"
    await n8n.apply_callback(
        session, tenant_id=UUID(envelope.tenantid), job_id=callback.job_id, payload=callback.payload
    )
