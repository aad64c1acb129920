"""Gateway business logic: workspaces, people and their tokens. Flush, never commit."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from pwdlib import PasswordHash
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.concurrency import run_in_threadpool

from bai_contracts import TenantCreated
from bai_platform.envelope import new_event
from bai_platform.errors import Forbidden
from bai_platform.identity import Identity
from bai_platform.outbox import emit
from gateway.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidToken,
    RefreshTokenReused,
    WrongPassword,
)
from gateway.models import Membership, RefreshToken, Tenant, User, outbox
from gateway.schemas import (
    InvitationAccept,
    LoginRequest,
    PasswordChange,
    SignupRequest,
    TokenResponse,
)
from gateway.service import workspaces
from gateway.service.signing_keys import KeyRing, KeyStore
from gateway.service.tokens import issue_access_token, new_refresh_token, token_digest
from gateway.settings import GatewaySettings


@dataclass(frozen=True)
class AuthContext:
    """What issuing tokens needs, built once in the app's lifespan."""

    settings: GatewaySettings
    keys: KeyStore
    hasher: PasswordHash
    dummy_hash: str

    @property
    def ring(self) -> KeyRing:
        return self.keys.ring


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def signup(session: AsyncSession, *, auth: AuthContext, data: SignupRequest) -> TokenResponse:
    """Create a workspace and its owner, and sign the owner in."""
    email = normalise_email(data.email)
    if await session.scalar(select(col(User.id)).where(col(User.email) == email)):
        raise EmailTaken("an account with this email already exists")
    password_hash = await run_in_threadpool(auth.hasher.hash, data.password)
    tenant, user = Tenant(name=data.workspace), User(email=email, password_hash=password_hash)
    session.add_all([tenant, user])
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent signup with the same email won
        raise EmailTaken("an account with this email already exists") from exc
    session.add(Membership(tenant_id=tenant.id, user_id=user.id, role="owner"))
    event = TenantCreated(tenant_id=tenant.id, name=tenant.name, owner_user_id=user.id)
    await emit(session, outbox, new_event(event, source="gateway", tenant_id=tenant.id))
    return await _issue(
        session, auth=auth, user_id=user.id, tenant_id=tenant.id, roles=["owner"], family_id=uuid4()
    )


async def login(session: AsyncSession, *, auth: AuthContext, data: LoginRequest) -> TokenResponse:
    """Check the password and sign in to the user's first workspace."""
    user = await session.scalar(select(User).where(col(User.email) == normalise_email(data.email)))
    # Hash even for an unknown email, so timing does not reveal which emails exist.
    stored = user.password_hash if user else auth.dummy_hash
    valid = await run_in_threadpool(auth.hasher.verify, data.password, stored)
    if user is None or not valid:
        raise InvalidCredentials("the email or the password is wrong")
    membership = await session.scalar(
        select(Membership)
        .where(col(Membership.user_id) == user.id)
        .order_by(col(Membership.created_at))
        .limit(1)
    )
    if membership is None:
        raise InvalidCredentials("this account belongs to no workspace")
    return await _issue(
        session,
        auth=auth,
        user_id=user.id,
        tenant_id=membership.tenant_id,
        roles=[membership.role],
        family_id=uuid4(),
    )


async def refresh(session: AsyncSession, *, auth: AuthContext, token: str) -> TokenResponse:
    """Rotate a refresh token; a reused one revokes its whole family."""
    row = await session.scalar(
        select(RefreshToken)
        .where(col(RefreshToken.token_hash) == token_digest(token))
        .with_for_update()
    )
    now = datetime.now(UTC)
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise InvalidToken("the refresh token is not valid")
    if row.used_at is not None:
        await _revoke(session, col(RefreshToken.family_id) == row.family_id)
        raise RefreshTokenReused(
            "this refresh token was already used; sign in again", session_id=row.family_id
        )
    row.used_at = now
    membership = await session.get(Membership, (row.tenant_id, row.user_id))
    if membership is None:
        raise InvalidToken("the membership behind this token no longer exists")
    return await _issue(
        session,
        auth=auth,
        user_id=row.user_id,
        tenant_id=row.tenant_id,
        roles=[membership.role],
        family_id=row.family_id,
    )


async def logout(session: AsyncSession, *, token: str) -> UUID | None:
    """End the session behind a refresh token (its whole family); unknown tokens too,
    quietly. Returns the session that was ended, if any."""
    row = await session.scalar(
        select(RefreshToken).where(col(RefreshToken.token_hash) == token_digest(token))
    )
    if row is None:
        return None
    await _revoke(session, col(RefreshToken.family_id) == row.family_id)
    return row.family_id


async def change_password(
    session: AsyncSession, *, auth: AuthContext, identity: Identity, data: PasswordChange
) -> TokenResponse:
    """Set a new password and end every session of the user; this device gets new tokens."""
    user = await session.get(User, UUID(identity.subject), with_for_update=True)
    if user is None or identity.credential != "user":
        raise Forbidden("only a person can change their password")
    if not await run_in_threadpool(auth.hasher.verify, data.current_password, user.password_hash):
        raise WrongPassword("the current password is wrong")
    user.password_hash = await run_in_threadpool(auth.hasher.hash, data.new_password)
    user.session_epoch += 1
    await _revoke(session, col(RefreshToken.user_id) == user.id)
    return await _issue(
        session,
        auth=auth,
        user_id=user.id,
        tenant_id=identity.tenant_id,
        roles=sorted(identity.roles),
        family_id=uuid4(),
    )


async def switch_workspace(
    session: AsyncSession, *, auth: AuthContext, identity: Identity, tenant_id: UUID
) -> TokenResponse:
    """Tokens for another workspace the caller belongs to."""
    if identity.credential != "user":
        raise Forbidden("only a person can switch workspaces")
    user_id = UUID(identity.subject)
    member = await workspaces.membership(session, user_id=user_id, tenant_id=tenant_id)
    return await _issue(
        session,
        auth=auth,
        user_id=user_id,
        tenant_id=tenant_id,
        roles=[member.role],
        family_id=uuid4(),
    )


async def join(
    session: AsyncSession, *, auth: AuthContext, data: InvitationAccept
) -> TokenResponse:
    """Accept an invitation and sign in to the workspace it opens."""
    joined = await workspaces.accept(session, hasher=auth.hasher, data=data)
    return await _issue(
        session,
        auth=auth,
        user_id=joined.user_id,
        tenant_id=joined.tenant_id,
        roles=[joined.role],
        family_id=uuid4(),
    )


async def _revoke(session: AsyncSession, condition: ColumnElement[bool]) -> None:
    await session.execute(
        update(RefreshToken)
        .where(condition, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


async def _session_epoch(session: AsyncSession, user_id: UUID) -> int:
    epoch = await session.scalar(select(col(User.session_epoch)).where(col(User.id) == user_id))
    return int(epoch or 0)


async def _issue(
    session: AsyncSession,
    *,
    auth: AuthContext,
    user_id: UUID,
    tenant_id: UUID,
    roles: list[str],
    family_id: UUID,
) -> TokenResponse:
    settings = auth.settings
    refresh_token = new_refresh_token()
    session.add(
        RefreshToken(
            token_hash=token_digest(refresh_token),
            family_id=family_id,
            user_id=user_id,
            tenant_id=tenant_id,
            expires_at=datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl_seconds),
        )
    )
    access = issue_access_token(
        auth.ring,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
        user_id=user_id,
        tenant_id=tenant_id,
        roles=roles,
        session_epoch=await _session_epoch(session, user_id),
        session_id=family_id,
    )
    return TokenResponse(
        access_token=access,
        refresh_token=refresh_token,
        expires_in=settings.access_token_ttl_seconds,
        tenant_id=tenant_id,
        user_id=user_id,
    )
