"""Gateway API shapes."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

from bai_platform.access import KEY_SCOPES
from bai_platform.validation import NoNul
from gateway.service.visitors import WIDGET_KEY_PATTERN

Password = Annotated[str, Field(min_length=10, max_length=128)]
Workspace = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul
]


class SignupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: Password
    workspace: Workspace


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: Annotated[str, Field(min_length=1, max_length=128)]


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: Annotated[str, Field(min_length=20, max_length=200)]


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    tenant_id: UUID
    user_id: UUID


class MeResponse(BaseModel):
    user_id: str
    tenant_id: UUID
    roles: list[str]
    scopes: list[str]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul
    ]
    role: Literal["editor", "viewer"] = "editor"
    # The document lists the scopes (clients and the fuzz then send real ones); the validator
    # names the unknown ones.
    scopes: Annotated[
        list[str],
        Field(
            min_length=1,
            max_length=len(KEY_SCOPES),
            json_schema_extra={"items": {"type": "string", "enum": sorted(KEY_SCOPES)}},
        ),
    ]
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        unknown = sorted(set(scopes) - KEY_SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; known: {sorted(KEY_SCOPES)}")
        return sorted(set(scopes))


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    name: str
    prefix: str
    role: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The full key. It is shown this once and never again.")


class ApiKeyList(BaseModel):
    items: list[ApiKeyRead]


Role = Literal["owner", "admin", "editor", "viewer"]


class LogoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: Annotated[str, Field(min_length=20, max_length=200)]


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: Annotated[str, Field(min_length=1, max_length=128)]
    new_password: Password


class WorkspaceRead(BaseModel):
    tenant_id: UUID
    name: str
    role: Role


class WorkspaceList(BaseModel):
    items: list[WorkspaceRead]


class SwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: UUID


class MemberRead(BaseModel):
    user_id: UUID
    email: str
    role: Role
    joined_at: datetime


class MemberList(BaseModel):
    items: list[MemberRead]


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class InvitationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    role: Role = "editor"


class InvitationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    email: str
    role: Role
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None


class InvitationCreated(InvitationRead):
    token: str = Field(description="The invitation secret. It is shown this once.")
    accept_url: str


class InvitationList(BaseModel):
    items: list[InvitationRead]


class InvitationAccept(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, Field(min_length=20, max_length=200)]
    password: Password


class CallbackAccepted(BaseModel):
    accepted: Literal[True] = True
    event_id: str


class VisitorTokenRequest(BaseModel):
    """A website chat widget asks for a visitor token with its public key."""

    model_config = ConfigDict(extra="forbid")

    widget_key: Annotated[str, Field(min_length=1, max_length=100, pattern=WIDGET_KEY_PATTERN)]
    # A returning visitor's id (from an earlier token) keeps their conversations; anything
    # that is not a visitor id gets a new one.
    visitor_id: Annotated[str | None, Field(max_length=100)] = None


class VisitorTokenResponse(BaseModel):
    token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    visitor_id: str
