"""Gateway tables (schema ``gateway``), as SQLModel tables in the gateway's own registry.

They span workspaces (users, memberships, keys), so none is ``TenantOwned``.
"""

from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import ARRAY, Float, LargeBinary, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from bai_platform.consumer import InboxRecord
from bai_platform.db import created_now, table_of, table_registry, timestamp
from bai_platform.idempotency import IdempotencyRecord
from bai_platform.outbox import OutboxRecord


class GatewayTable(SQLModel, registry=table_registry("gateway")):
    """The base of the gateway's tables."""


class Tenant(GatewayTable, table=True):
    __tablename__ = "tenants"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str = Field(sa_type=String(100))
    # Billing's word on the plan (None until it speaks); rate-limit tiers follow it.
    plan: str | None = Field(default=None, sa_type=String(32))
    plan_changed_at: float | None = Field(default=None, sa_type=Float)
    # Members plus open invitations the plan allows (billing's word); None: no limit.
    seat_limit: int | None = None
    created_at: datetime = created_now()


class User(GatewayTable, table=True):
    __tablename__ = "users"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    email: str = Field(sa_type=String(320), unique=True)
    password_hash: str = Field(sa_type=String(255))
    # Access tokens carry the epoch they were issued in; a password change moves it on, and
    # tokens of an earlier epoch are refused at the edge.
    session_epoch: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    created_at: datetime = created_now()


class Membership(GatewayTable, table=True):
    __tablename__ = "memberships"

    tenant_id: UUID = Field(primary_key=True, foreign_key="gateway.tenants.id", ondelete="CASCADE")
    user_id: UUID = Field(
        primary_key=True, foreign_key="gateway.users.id", ondelete="CASCADE", index=True
    )
    role: str = Field(sa_type=String(16))
    created_at: datetime = created_now()


class SigningKey(GatewayTable, table=True):
    """An Ed25519 key pair; the private half encrypted with the key-encryption secret."""

    __tablename__ = "signing_keys"

    kid: str = Field(sa_type=String(64), primary_key=True)
    private_key: bytes = Field(sa_type=LargeBinary)
    public_jwk: dict[str, str] = Field(sa_type=JSONB)
    created_at: datetime = created_now()
    retired_at: datetime | None = timestamp(nullable=True)


class RefreshToken(GatewayTable, table=True):
    """Opaque refresh tokens, stored as SHA-256 digests, rotated on every use."""

    __tablename__ = "refresh_tokens"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    token_hash: str = Field(sa_type=String(64), unique=True)
    family_id: UUID = Field(index=True)
    user_id: UUID = Field(foreign_key="gateway.users.id", ondelete="CASCADE", index=True)
    tenant_id: UUID
    expires_at: datetime = timestamp()
    used_at: datetime | None = timestamp(nullable=True)
    revoked_at: datetime | None = timestamp(nullable=True)
    created_at: datetime = created_now()


class ApiKey(GatewayTable, table=True):
    """A credential for integrations: ``bai_<prefix>_<secret>``, only its digest stored."""

    __tablename__ = "api_keys"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    tenant_id: UUID = Field(foreign_key="gateway.tenants.id", ondelete="CASCADE", index=True)
    created_by: UUID
    name: str = Field(sa_type=String(100))
    prefix: str = Field(sa_type=String(16), unique=True)
    secret_hash: str = Field(sa_type=String(64))
    role: str = Field(sa_type=String(16))
    scopes: list[str] = Field(sa_type=ARRAY(String(32)))
    created_at: datetime = created_now()
    expires_at: datetime | None = timestamp(nullable=True)
    last_used_at: datetime | None = timestamp(nullable=True)
    revoked_at: datetime | None = timestamp(nullable=True)


class Invitation(GatewayTable, table=True):
    """A signed, single-use link that makes its holder a member with ``role``."""

    __tablename__ = "invitations"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    tenant_id: UUID = Field(foreign_key="gateway.tenants.id", ondelete="CASCADE", index=True)
    email: str = Field(sa_type=String(320))
    role: str = Field(sa_type=String(16))
    token_hash: str = Field(sa_type=String(64), unique=True)
    invited_by: UUID
    created_at: datetime = created_now()
    expires_at: datetime = timestamp()
    accepted_at: datetime | None = timestamp(nullable=True)
    revoked_at: datetime | None = timestamp(nullable=True)


class Outbox(GatewayTable, OutboxRecord, table=True):
    """Events of this service waiting to be published (``bai_platform.outbox``)."""


class Inbox(GatewayTable, InboxRecord, table=True):
    """Events this service's consumers have applied (``bai_platform.consumer``)."""


class IdempotencyKey(GatewayTable, IdempotencyRecord, table=True):
    """Answers kept for ``Idempotency-Key`` (``bai_platform.idempotency``)."""


outbox = table_of(Outbox)
inbox = table_of(Inbox)
idempotency = table_of(IdempotencyKey)
