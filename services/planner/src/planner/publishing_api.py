"""Routes for the publishing workflow: where due posts are sent to be published."""

from fastapi import APIRouter, Request, status

from bai_platform.app_state import settings_of
from bai_platform.db import ReadSession, Session
from bai_platform.identity import Admin, CurrentIdentity
from bai_platform.secrets import fernet_for
from planner.schemas import PublishingTargetRead, PublishingTargetUpdate
from planner.service import publishing
from planner.settings import PlannerSettings

router = APIRouter(prefix="/v1/planner", tags=["planner"])


@router.put("/publishing-target")
async def set_publishing_target(
    body: PublishingTargetUpdate, request: Request, identity: Admin, session: Session
) -> PublishingTargetRead:
    """Where due posts are sent to be published (the tenant's n8n workflow)."""
    settings = settings_of(request, PlannerSettings)
    box = fernet_for(settings.secret_key, "planner/publishing-secrets")
    target = await publishing.set_target(
        session,
        identity=identity,
        data=body,
        box=box,
        allow_private=settings.allow_private_destinations,
    )
    return PublishingTargetRead.model_validate(target, from_attributes=True)


@router.get("/publishing-target")
async def get_publishing_target(
    identity: CurrentIdentity, session: ReadSession
) -> PublishingTargetRead:
    target = await publishing.get_target(session, tenant_id=identity.tenant_id)
    return PublishingTargetRead.model_validate(target, from_attributes=True)


@router.delete("/publishing-target", status_code=status.HTTP_204_NO_CONTENT)
async def delete_publishing_target(identity: Admin, session: Session) -> None:
    await publishing.delete_target(session, identity=identity)
