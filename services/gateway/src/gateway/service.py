"""Gateway business logic: workspaces, people and their tokens. Flush, never commit."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from pwdlib import PasswordHash
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from bai_contracts import TenantCreated
from bai_platform.envelope import new_event
from bai_platform.outbox import emit
from gateway.errors import EmailTaken, InvalidCredentials, InvalidToken, RefreshTokenReused
from gateway.keys import KeyRing, KeyStore
from gateway.models import Membership, RefreshToken, Tenant, User, outbox
from gateway.schemas import LoginRequest, SignupRequest, TokenResponse
from gateway.settings import GatewaySettings
from gateway.tokens import issue_access_token, new_refresh_token, token_digest


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
    if await session.scalar(select(User.id).where(User.email == email)):
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
    user = await session.scalar(select(User).where(User.email == normalise_email(data.email)))
    # Hash even for an unknown email, so timing does not reveal which emails exist.
    stored = user.password_hash if user else auth.dummy_hash
    valid = await run_in_threadpool(auth.hasher.verify, data.password, stored)
    if user is None or not valid:
        raise InvalidCredentials("the email or the password is wrong")
    membership = await session.scalar(
        select(Membership)
        .where(Membership.user_id == user.id)
        .order_by(Membership.created_at)
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
        select(RefreshToken).where(RefreshToken.token_hash == token_digest(token)).with_for_update()
    )
    now = datetime.now(UTC)
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise InvalidToken("the refresh token is not valid")
    if row.used_at is not None:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == row.family_id)
            .values(revoked_at=now)
        )
        raise RefreshTokenReused("this refresh token was already used; sign in again")
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
    )
    await session.flush()
    return TokenResponse(
        access_token=access,
        refresh_token=refresh_token,
        expires_in=settings.access_token_ttl_seconds,
        tenant_id=tenant_id,
        user_id=user_id,
    )
