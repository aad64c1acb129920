"""Planner's handlers for other services' events; each runs inside the inbox transaction."""

from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import (
    CallbackReceived,
    ContentFailed,
    ContentGenerated,
    ContentGenerationStarted,
    ContentVersionChosen,
)
from bai_platform.envelope import Envelope
from planner.service import generation, publishing

log = structlog.get_logger("planner.events")


def _tenant(envelope: Envelope) -> UUID:
    assert envelope.tenantid is not None, "tenant events always carry the tenant"
    return UUID(envelope.tenantid)


async def on_content_event(session: AsyncSession, envelope: Envelope) -> None:
    """Follow creator: a job started, content arrived, or generation failed."""
    tenant_id = _tenant(envelope)
    if envelope.type == ContentGenerated.subject:
        event = envelope.payload(ContentGenerated)
        await generation.apply_generated(session, tenant_id=tenant_id, event=event)
    elif envelope.type == ContentFailed.subject:
        failed = envelope.payload(ContentFailed)
        await generation.apply_failed(session, tenant_id=tenant_id, event=failed)
    elif envelope.type == ContentGenerationStarted.subject:
        started = envelope.payload(ContentGenerationStarted)
        await generation.apply_started(session, tenant_id=tenant_id, event=started)
    elif envelope.type == ContentVersionChosen.subject:
        chosen = envelope.payload(ContentVersionChosen)
        await generation.apply_version_chosen(session, tenant_id=tenant_id, event=chosen)


async def on_publish_callback(session: AsyncSession, envelope: Envelope) -> None:
    """A publishing workflow answered (the gateway verified its signature)."""
    callback = envelope.payload(CallbackReceived)
    await publishing.apply_callback(
        session, tenant_id=_tenant(envelope), job_id=callback.job_id, payload=callback.payload
    )
