"""Workspaces and the people in them: memberships, roles, invitations, switching.

Roles, from most to least: owner, admin, editor, viewer. Owners and admins manage people;
only an owner grants or takes away ownership, and a workspace always keeps one owner.
Invitations are single-use signed links (a random token, stored as a digest) that expire.
Seats: when billing says the plan in force allows N seats, members plus open invitations
never exceed N (inviting or joining beyond it is 409 ``seats_exhausted``); without a
subscription there is no limit.
"""

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import Depends
from pwdlib import PasswordHash
from sqlalchemy import exists, false, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.concurrency import run_in_threadpool

from bai_platform.access import ADMINS
from bai_platform.errors import Conflict, Forbidden, NotFound
from bai_platform.identity import Identity, RequireRole
from gateway.errors import InvalidCredentials
from gateway.models import Invitation, Membership, RefreshToken, Tenant, User
from gateway.schemas import InvitationAccept, InvitationCreate
from gateway.service.tokens import token_digest

INVITATION_TTL = timedelta(days=7)


class MemberNotFound(NotFound):
    code = "member_not_found"


class WorkspaceNotFound(NotFound):
    code = "workspace_not_found"


class InvitationNotValid(NotFound):
    code = "invitation_not_valid"


class LastOwner(Conflict):
    code = "last_owner"


class AlreadyMember(Conflict):
    code = "already_member"


class SeatsExhausted(Conflict):
    code = "seats_exhausted"


@dataclass(frozen=True, slots=True)
class Joined:
    """Who accepted an invitation, into which workspace, with which role."""

    user_id: UUID
    tenant_id: UUID
    role: str


# The routes that manage members and invitations ask for this (``identity: Manager``).
Manager = Annotated[
    Identity,
    Depends(RequireRole(*ADMINS, people_only="people are managed by people, not by API keys")),
]


def _may_grant(identity: Identity, role: str) -> None:
    if role == "owner" and "owner" not in identity.roles:
        raise Forbidden("only an owner can grant or take away ownership")


async def workspaces_of(session: AsyncSession, *, user_id: UUID) -> list[tuple[Tenant, str]]:
    query = (
        select(Tenant, col(Membership.role))
        .join(Membership, col(Membership.tenant_id) == col(Tenant.id))
        .where(col(Membership.user_id) == user_id)
        .order_by(col(Membership.created_at))
    )
    return [(tenant, role) for tenant, role in (await session.execute(query)).all()]


async def membership(session: AsyncSession, *, user_id: UUID, tenant_id: UUID) -> Membership:
    row = await session.get(Membership, (tenant_id, user_id))
    if row is None:
        raise WorkspaceNotFound("you are not a member of this workspace")
    return row


@dataclass(frozen=True, slots=True)
class SessionState:
    """What the edge needs to know about a signed-in person, read once per decision."""

    role: str
    session_epoch: int
    plan: str | None
    # The session (refresh-token family) was ended: logout, or a reused refresh token.
    session_ended: bool = False


async def session_state(
    session: AsyncSession, *, user_id: UUID, tenant_id: UUID, session_id: UUID | None = None
) -> SessionState | None:
    """The user's current role in the workspace, session epoch, whether the session
    ``session_id`` was ended, and the workspace's plan: one query."""
    ended = (
        exists().where(
            col(RefreshToken.family_id) == session_id, col(RefreshToken.revoked_at).is_not(None)
        )
        if session_id is not None
        else false()
    )
    query = (
        select(
            col(Membership.role), col(User.session_epoch), col(Tenant.plan), ended.label("ended")
        )
        .join(User, col(User.id) == col(Membership.user_id))
        .join(Tenant, col(Tenant.id) == col(Membership.tenant_id))
        .where(col(Membership.user_id) == user_id, col(Membership.tenant_id) == tenant_id)
    )
    row = (await session.execute(query)).first()
    return None if row is None else SessionState(row[0], row[1], row[2], bool(row[3]))


async def tenant_plan(session: AsyncSession, *, tenant_id: UUID) -> str | None:
    plan: str | None = await session.scalar(
        select(col(Tenant.plan)).where(col(Tenant.id) == tenant_id)
    )
    return plan


async def members(session: AsyncSession, *, identity: Identity) -> list[tuple[User, Membership]]:
    query = (
        select(User, Membership)
        .join(Membership, col(Membership.user_id) == col(User.id))
        .where(col(Membership.tenant_id) == identity.tenant_id)
        .order_by(col(Membership.created_at))
    )
    return [(user, member) for user, member in (await session.execute(query)).all()]


async def _member(session: AsyncSession, identity: Identity, user_id: UUID) -> Membership:
    row = await session.get(Membership, (identity.tenant_id, user_id), with_for_update=True)
    if row is None:
        raise MemberNotFound("no such member in this workspace")
    return row


async def _keep_an_owner(session: AsyncSession, target: Membership) -> None:
    if target.role != "owner":
        return
    owners = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(col(Membership.tenant_id) == target.tenant_id, col(Membership.role) == "owner")
    )
    if (owners or 0) <= 1:
        raise LastOwner("a workspace keeps at least one owner")


async def change_role(
    session: AsyncSession, *, identity: Identity, user_id: UUID, role: str
) -> Membership:
    target = await _member(session, identity, user_id)
    _may_grant(identity, target.role)
    _may_grant(identity, role)
    if role != "owner":
        await _keep_an_owner(session, target)
    target.role = role
    return target


async def remove_member(session: AsyncSession, *, identity: Identity, user_id: UUID) -> None:
    target = await _member(session, identity, user_id)
    _may_grant(identity, target.role)
    await _keep_an_owner(session, target)
    await session.delete(target)


async def invite(
    session: AsyncSession, *, identity: Identity, data: InvitationCreate
) -> tuple[Invitation, str]:
    """A single-use invitation; the token is returned only here."""
    _may_grant(identity, data.role)
    await _seat_free(session, identity.tenant_id, counting_invitations=True)
    token = "inv_" + secrets.token_urlsafe(32)
    row = Invitation(
        tenant_id=identity.tenant_id,
        email=data.email.strip().lower(),
        role=data.role,
        token_hash=token_digest(token),
        invited_by=UUID(identity.subject),
        expires_at=datetime.now(UTC) + INVITATION_TTL,
    )
    session.add(row)
    await session.flush()
    return row, token


async def invitations(session: AsyncSession, *, identity: Identity) -> list[Invitation]:
    query = (
        select(Invitation)
        .where(col(Invitation.tenant_id) == identity.tenant_id)
        .order_by(col(Invitation.created_at).desc())
    )
    return list((await session.scalars(query)).all())


async def revoke_invitation(
    session: AsyncSession, *, identity: Identity, invitation_id: UUID
) -> None:
    row = await session.scalar(
        select(Invitation).where(
            col(Invitation.id) == invitation_id, col(Invitation.tenant_id) == identity.tenant_id
        )
    )
    if row is None:
        raise InvitationNotValid("no such invitation in this workspace")
    row.revoked_at = row.revoked_at or datetime.now(UTC)


async def accept(session: AsyncSession, *, hasher: PasswordHash, data: InvitationAccept) -> Joined:
    """Join with an invitation: an existing account proves its password, a new one is made."""
    invitation = await _open_invitation(session, data.token)
    user = await session.scalar(select(User).where(col(User.email) == invitation.email))
    if user is None:
        user = User(
            email=invitation.email,
            password_hash=await run_in_threadpool(hasher.hash, data.password),
        )
        session.add(user)
        await session.flush()
    elif not await run_in_threadpool(hasher.verify, data.password, user.password_hash):
        raise InvalidCredentials("the password of the invited account is wrong")
    if await session.get(Membership, (invitation.tenant_id, user.id)) is not None:
        raise AlreadyMember("this account is already a member of the workspace")
    await _seat_free(session, invitation.tenant_id, counting_invitations=False)
    session.add(Membership(tenant_id=invitation.tenant_id, user_id=user.id, role=invitation.role))
    invitation.accepted_at = datetime.now(UTC)
    await session.flush()
    return Joined(user_id=user.id, tenant_id=invitation.tenant_id, role=invitation.role)


async def _seat_free(session: AsyncSession, tenant_id: UUID, *, counting_invitations: bool) -> None:
    """Refuse when the plan's seats are all taken (members, and open invitations when
    inviting); the tenant row is locked so two at once cannot both take the last seat."""
    limit = await session.scalar(
        select(col(Tenant.seat_limit)).where(col(Tenant.id) == tenant_id).with_for_update()
    )
    if limit is None:
        return
    taken = int(
        await session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(col(Membership.tenant_id) == tenant_id)
        )
        or 0
    )
    if counting_invitations:
        taken += int(
            await session.scalar(
                select(func.count())
                .select_from(Invitation)
                .where(
                    col(Invitation.tenant_id) == tenant_id,
                    col(Invitation.accepted_at).is_(None),
                    col(Invitation.revoked_at).is_(None),
                    col(Invitation.expires_at) > datetime.now(UTC),
                )
            )
            or 0
        )
    if taken >= limit:
        raise SeatsExhausted(
            f"the workspace's plan has {limit} seats and all are taken or invited: revoke an "
            "invitation, remove a member or move to a bigger plan"
        )


async def _open_invitation(session: AsyncSession, token: str) -> Invitation:
    row = await session.scalar(
        select(Invitation)
        .where(col(Invitation.token_hash) == token_digest(token))
        .with_for_update()
    )
    now = datetime.now(UTC)
    if row is None or row.accepted_at or row.revoked_at or row.expires_at <= now:
        raise InvitationNotValid("this invitation is not valid (used, revoked or expired)")
    return row
