"""The tenant's n8n mining workflow: where ``n8n`` jobs go, signed with its secret.

One per workspace, set by an owner or admin (``bai_platform.workflow_targets``). The URL
is checked as a destination when it is saved (and again before every dispatch); the secret
is encrypted at rest with a key derived for this purpose and never shown again, nor are
credentials written in the URL.
"""

from uuid import UUID

from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncSession

from bai_platform.errors import Conflict, NotFound
from bai_platform.identity import Identity
from bai_platform.workflow_targets import save_for_tenant, workflow_values
from mining.models import MiningWorkflow
from mining.schemas import WorkflowUpdate

SECRETS_PURPOSE = "mining/workflow-secrets"
NOT_CONFIGURED = "no mining workflow is configured for this workspace"
CONFIGURE = "configure it first with PUT /v1/mining/workflow"


class WorkflowNotFound(NotFound):
    code = "no_mining_workflow"


class WorkflowMissing(Conflict):
    """An n8n job asked for in a workspace that has no workflow to run it."""

    code = "no_mining_workflow"


async def set_workflow(
    session: AsyncSession,
    *,
    identity: Identity,
    data: WorkflowUpdate,
    box: Fernet,
    allow_private: bool,
) -> MiningWorkflow:
    """Store (or replace) the tenant's mining workflow; the secret is encrypted."""
    values = await workflow_values(data, box=box, allow_private=allow_private)
    values["deadline_seconds"] = data.deadline_seconds
    await save_for_tenant(session, MiningWorkflow, identity=identity, values=values)
    return await get_workflow(session, tenant_id=identity.tenant_id)


async def get_workflow(session: AsyncSession, *, tenant_id: UUID) -> MiningWorkflow:
    workflow = await session.get(MiningWorkflow, tenant_id, populate_existing=True)
    if workflow is None:
        raise WorkflowNotFound(f"{NOT_CONFIGURED}; {CONFIGURE}")
    return workflow


async def delete_workflow(session: AsyncSession, *, identity: Identity) -> None:
    await session.delete(await get_workflow(session, tenant_id=identity.tenant_id))


async def require_workflow(session: AsyncSession, *, tenant_id: UUID) -> None:
    """Refuse an n8n job (409) in a workspace with no workflow to run it."""
    if await session.get(MiningWorkflow, tenant_id) is None:
        raise WorkflowMissing(f"{NOT_CONFIGURED}, so n8n jobs cannot run; {CONFIGURE}")
