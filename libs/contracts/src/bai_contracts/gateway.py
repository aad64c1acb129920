"""Facts the gateway publishes."""

from typing import ClassVar
from uuid import UUID

from bai_contracts._base import EventContract


class TenantCreated(EventContract):
    """A workspace was created by a signup; its owner is ``owner_user_id``."""

    subject: ClassVar[str] = "bai.gateway.tenant.created.v1"

    tenant_id: UUID
    name: str
    owner_user_id: UUID
