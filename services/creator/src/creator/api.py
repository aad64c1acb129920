"""Creator HTTP routes."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Request

from bai_platform.app_state import settings_of
from bai_platform.db import PG_INTEGER_MAX, ReadSession, Session
from bai_platform.identity import Admin, CurrentIdentity, Editor
from bai_platform.secrets import fernet_for
from creator.schemas import (
    CampaignBriefRead,
    ContentVersionRead,
    ContentVersions,
    EngineRead,
    EngineUpdate,
    GenerationJobRead,
)
from creator.service import generation
from creator.service.engines import config
from creator.settings import CreatorSettings

router = APIRouter(prefix="/v1/creator", tags=["creator"])


@router.get("/campaigns/{campaign_id}/brief")
async def get_campaign_brief(
    campaign_id: UUID, identity: CurrentIdentity, session: ReadSession
) -> CampaignBriefRead:
    brief = await generation.get_campaign_brief(
        session, tenant_id=identity.tenant_id, campaign_id=campaign_id
    )
    return CampaignBriefRead.model_validate(brief)


@router.get("/jobs/{job_id}")
async def get_job(
    job_id: Annotated[str, Path(max_length=64)], identity: CurrentIdentity, session: ReadSession
) -> GenerationJobRead:
    """A generation job: its state, attempts and, when it failed, a readable reason."""
    job = await generation.get_job(session, tenant_id=identity.tenant_id, job_id=job_id)
    return GenerationJobRead.model_validate(job)


@router.get("/posts/{post_id}/versions")
async def post_versions(
    post_id: UUID, identity: CurrentIdentity, session: ReadSession
) -> ContentVersions:
    """Every version written for the post, newest first (regenerating keeps the history)."""
    rows = await generation.post_versions(session, tenant_id=identity.tenant_id, post_id=post_id)
    return ContentVersions(items=[ContentVersionRead.model_validate(r) for r in rows])


@router.put("/engine")
async def set_engine(
    body: EngineUpdate, request: Request, identity: Admin, session: Session
) -> EngineRead:
    """Choose how the workspace's posts are written: builtin, n8n or openai_compatible."""
    settings = settings_of(request, CreatorSettings)
    box = fernet_for(settings.secret_key, config.ENGINE_SECRETS)
    row = await config.set_engine(
        session,
        identity=identity,
        data=body,
        box=box,
        allow_private=settings.allow_private_destinations,
    )
    return config.engine_read(row)


@router.get("/engine")
async def get_engine(identity: CurrentIdentity, session: ReadSession) -> EngineRead:
    """The workspace's engine (built in unless chosen otherwise); secrets are never shown."""
    return config.engine_read(await config.engine_of(session, tenant_id=identity.tenant_id))


@router.post("/posts/{post_id}/versions/{version}/choose", status_code=202)
async def choose_version(
    post_id: UUID,
    version: Annotated[int, Path(ge=1, le=PG_INTEGER_MAX)],
    identity: Editor,
    session: Session,
) -> ContentVersionRead:
    """Make an earlier version the post's draft again; the planner takes it over."""
    chosen = await generation.choose_version(
        session, identity=identity, post_id=post_id, version=version
    )
    return ContentVersionRead.model_validate(chosen)
