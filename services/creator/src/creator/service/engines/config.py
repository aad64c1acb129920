"""Each tenant's engine: built in (the default), an n8n workflow, or an OpenAI-compatible
API. Owners and admins choose it; URLs must be public (``bai_platform.destinations``)
unless the deployment allows private ones; secrets and keys are stored encrypted and never
shown again. A job keeps the engine it was queued with."""

from uuid import UUID

from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncSession

from bai_platform.destinations import without_credentials
from bai_platform.errors import FieldInvalid
from bai_platform.identity import Identity
from bai_platform.workflow_targets import check_public, save_for_tenant, workflow_values
from creator.models import EngineSettings
from creator.schemas import (
    BuiltinEngine,
    EngineRead,
    EngineUpdate,
    N8nEngine,
    OpenAICompatibleEngine,
)

BUILTIN, N8N, OPENAI_COMPATIBLE = "builtin", "n8n", "openai_compatible"
# The purpose the engines' secrets are encrypted under (bai_platform.secrets).
ENGINE_SECRETS = "creator/engine-secrets"
# The longest URL the settings' columns hold.
URL_LIMIT = 2000


async def set_engine(
    session: AsyncSession,
    *,
    identity: Identity,
    data: EngineUpdate,
    box: Fernet,
    allow_private: bool,
) -> EngineSettings:
    """Store the tenant's engine, replacing the one before."""
    values = await _values(data.root, box, allow_private)
    await save_for_tenant(session, EngineSettings, identity=identity, values=values)
    row = await session.get(EngineSettings, identity.tenant_id, populate_existing=True)
    assert row is not None, "just stored"
    return row


async def engine_of(session: AsyncSession, *, tenant_id: UUID) -> EngineSettings | None:
    """The tenant's engine settings; None means the built-in engine."""
    return await session.get(EngineSettings, tenant_id)


def engine_read(row: EngineSettings | None) -> EngineRead:
    if row is None:
        return EngineRead(type=BUILTIN)
    return EngineRead(
        type=row.engine,
        webhook_url=without_credentials(row.webhook_url) if row.webhook_url else None,
        accept_secret_header=row.accept_secret_header,
        deadline_seconds=row.deadline_seconds if row.engine == N8N else None,
        base_url=without_credentials(row.base_url) if row.base_url else None,
        model=row.model,
        updated_at=row.updated_at,
    )


async def _values(
    engine: BuiltinEngine | N8nEngine | OpenAICompatibleEngine, box: Fernet, allow_private: bool
) -> dict[str, object]:
    blank: dict[str, object] = {
        "engine": engine.type,
        "webhook_url": None,
        "secret": None,
        "accept_secret_header": False,
        "deadline_seconds": 600,
        "base_url": None,
        "model": None,
        "api_key": None,
    }
    if isinstance(engine, N8nEngine):
        _short(str(engine.webhook_url), "webhook_url")
        workflow = await workflow_values(engine, box=box, allow_private=allow_private)
        return blank | workflow | {"deadline_seconds": engine.deadline_seconds}
    if isinstance(engine, OpenAICompatibleEngine):
        _short(str(engine.base_url), "base_url")
        await check_public(str(engine.base_url), field="base_url", allow_private=allow_private)
        return blank | {
            "base_url": str(engine.base_url).rstrip("/"),
            "model": engine.model,
            "api_key": box.encrypt(engine.api_key.encode()),
        }
    return blank


def _short(url: str, field: str) -> None:
    if len(url) > URL_LIMIT:
        raise FieldInvalid(field, f"the URL must be at most {URL_LIMIT} characters")
