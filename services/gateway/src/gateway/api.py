"""Gateway HTTP routes: public auth, JWKS and the caller's identity (the ForwardAuth decision
is ``gateway.verify_api``)."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Path, Request, Response, status
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.background import BackgroundTask

from bai_platform.app_state import held, platform_of
from bai_platform.db import Session
from bai_platform.errors import NotFound
from bai_platform.identity import CurrentIdentity
from bai_platform.openapi_links import ANSWER_ID, leads_to, link_to
from gateway import openapi
from gateway.deps import LIMIT_BY_IP, Auth, Decider
from gateway.errors import RefreshTokenReused
from gateway.models import Membership, User
from gateway.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyRead,
    CallbackAccepted,
    InvitationAccept,
    InvitationCreate,
    InvitationCreated,
    InvitationList,
    InvitationRead,
    LoginRequest,
    LogoutRequest,
    MemberList,
    MemberRead,
    MeResponse,
    PasswordChange,
    RefreshRequest,
    RoleChange,
    SignupRequest,
    SwitchRequest,
    TokenResponse,
    WorkspaceList,
    WorkspaceRead,
)
from gateway.service import accounts, api_keys, workspaces
from gateway.service.api_keys import KeyManager
from gateway.service.callbacks import CallbackHeaders
from gateway.service.live import stream as live_stream
from gateway.service.workspaces import Manager
from gateway.state import GatewayState

router = APIRouter(tags=["auth"])

# The ids answers carry, linked to the operations that take them (bai_platform.openapi_links).
API_KEY_LINKS = leads_to(201, {"key_id": ANSWER_ID})
INVITATION_LINKS = leads_to(
    201,
    {"invitation_id": ANSWER_ID},
    accept_invitation=link_to(
        "post", "/v1/auth/invitations/accept", body={"token": "$response.body#/token"}
    ),
)

NO_STORE = {"Cache-Control": "no-store"}

# The live stream's answer: Server-Sent Events. Before OpenAPI 3.2's ``itemSchema``, an event
# stream's ``schema`` describes one event, as clients (and schemathesis) parse it: ``id``,
# ``event`` and JSON ``data``; the ``retry`` hint and ``:`` heartbeats carry no data.
LIVE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "id": {
            "type": "string",
            "description": (
                "`<stream>:<sequence>`, or a reset's `since:<unix milliseconds>`: send it back "
                "as Last-Event-ID to resume."
            ),
        },
        "event": {
            "type": "string",
            "description": (
                "The event's type, or `reset` when Last-Event-ID is unknown or too old: "
                "refetch, and resume from the reset's id."
            ),
            "examples": ["bai.planner.campaign.created.v1", "reset"],
        },
        "data": {"type": "string", "contentMediaType": "application/json"},
        "retry": {"type": "integer"},
    },
}
LIVE_EVENTS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The workspace's events as they happen, after the missed ones.",
        "content": {"text/event-stream": {"schema": LIVE_EVENT}},
    }
}


@router.post("/v1/auth/signup", status_code=status.HTTP_201_CREATED, dependencies=[LIMIT_BY_IP])
async def signup(
    body: SignupRequest, session: Session, auth: Auth, response: Response
) -> TokenResponse:
    response.headers.update(NO_STORE)
    return await accounts.signup(session, auth=auth, data=body)


@router.post("/v1/auth/login", dependencies=[LIMIT_BY_IP])
async def login(
    body: LoginRequest, session: Session, auth: Auth, response: Response
) -> TokenResponse:
    response.headers.update(NO_STORE)
    return await accounts.login(session, auth=auth, data=body)


@router.post("/v1/auth/refresh", dependencies=[LIMIT_BY_IP])
async def refresh(
    body: RefreshRequest, session: Session, auth: Auth, decider: Decider, response: Response
) -> TokenResponse:
    response.headers.update(NO_STORE)
    try:
        return await accounts.refresh(session, auth=auth, token=body.refresh_token)
    except RefreshTokenReused as exc:  # the family is revoked: its access tokens end here now
        decider.forget_session(exc.session_id)
        raise


@router.get("/v1/auth/me")
async def me(identity: CurrentIdentity) -> MeResponse:
    return MeResponse(
        user_id=identity.subject,
        tenant_id=identity.tenant_id,
        roles=sorted(identity.roles),
        scopes=sorted(identity.scopes),
    )


@router.get("/.well-known/jwks.json")
async def jwks(request: Request, response: Response) -> dict[str, list[dict[str, str]]]:
    response.headers["Cache-Control"] = "public, max-age=300"
    return held(request, GatewayState).auth.ring.jwks()


@router.post(
    "/v1/auth/api-keys",
    status_code=status.HTTP_201_CREATED,
    tags=["api keys"],
    responses=API_KEY_LINKS,
)
async def create_api_key(
    body: ApiKeyCreate, identity: KeyManager, session: Session, response: Response
) -> ApiKeyCreated:
    response.headers.update(NO_STORE)
    row, key = await api_keys.create_api_key(session, identity=identity, data=body)
    return ApiKeyCreated.model_validate({**ApiKeyRead.model_validate(row).model_dump(), "key": key})


@router.get("/v1/auth/api-keys", tags=["api keys"])
async def list_api_keys(identity: KeyManager, session: Session) -> ApiKeyList:
    rows = await api_keys.list_api_keys(session, identity=identity)
    return ApiKeyList(items=[ApiKeyRead.model_validate(row) for row in rows])


@router.delete(
    "/v1/auth/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["api keys"]
)
async def revoke_api_key(
    key_id: UUID, identity: KeyManager, session: Session, decider: Decider
) -> Response:
    row = await api_keys.revoke_api_key(session, identity=identity, key_id=key_id)
    decider.forget_api_key(row.prefix)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/auth/logout", status_code=status.HTTP_204_NO_CONTENT, dependencies=[LIMIT_BY_IP])
async def logout(body: LogoutRequest, session: Session, decider: Decider) -> Response:
    ended = await accounts.logout(session, token=body.refresh_token)
    if ended is not None:  # other replicas refuse the session's tokens within their cache TTL
        decider.forget_session(ended)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/auth/password")
async def change_password(
    body: PasswordChange,
    identity: CurrentIdentity,
    session: Session,
    auth: Auth,
    response: Response,
) -> TokenResponse:
    response.headers.update(NO_STORE)
    return await accounts.change_password(session, auth=auth, identity=identity, data=body)


@router.get("/v1/auth/workspaces", tags=["workspaces"])
async def list_workspaces(identity: CurrentIdentity, session: Session) -> WorkspaceList:
    rows = await workspaces.workspaces_of(session, user_id=UUID(identity.subject))
    return WorkspaceList(
        items=[
            WorkspaceRead(tenant_id=tenant.id, name=tenant.name, role=role) for tenant, role in rows
        ]
    )


@router.post("/v1/auth/switch", tags=["workspaces"])
async def switch_workspace(
    body: SwitchRequest,
    identity: CurrentIdentity,
    session: Session,
    auth: Auth,
    response: Response,
) -> TokenResponse:
    response.headers.update(NO_STORE)
    return await accounts.switch_workspace(
        session, auth=auth, identity=identity, tenant_id=body.tenant_id
    )


@router.get("/v1/auth/members", tags=["workspaces"])
async def list_members(identity: CurrentIdentity, session: Session) -> MemberList:
    rows = await workspaces.members(session, identity=identity)
    return MemberList(items=[_member(user, member) for user, member in rows])


@router.patch("/v1/auth/members/{user_id}", tags=["workspaces"])
async def change_member_role(
    user_id: UUID, body: RoleChange, identity: Manager, session: Session
) -> MemberRead:
    member = await workspaces.change_role(
        session, identity=identity, user_id=user_id, role=body.role
    )
    user = await session.get(User, user_id)
    assert user is not None  # a membership's user exists (foreign key)
    return _member(user, member)


@router.delete(
    "/v1/auth/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["workspaces"]
)
async def remove_member(user_id: UUID, identity: Manager, session: Session) -> Response:
    await workspaces.remove_member(session, identity=identity, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/auth/invitations",
    status_code=status.HTTP_201_CREATED,
    tags=["workspaces"],
    responses=INVITATION_LINKS,
)
async def invite(
    body: InvitationCreate,
    identity: Manager,
    session: Session,
    auth: Auth,
    response: Response,
) -> InvitationCreated:
    response.headers.update(NO_STORE)
    row, token = await workspaces.invite(session, identity=identity, data=body)
    # A fragment never reaches a server or its logs; the frontend posts the token.
    link = f"{auth.settings.public_base_url}/invitations#token={token}"
    read = InvitationRead.model_validate(row).model_dump()
    return InvitationCreated.model_validate({**read, "token": token, "accept_url": link})


@router.get("/v1/auth/invitations", tags=["workspaces"])
async def list_invitations(identity: Manager, session: Session) -> InvitationList:
    rows = await workspaces.invitations(session, identity=identity)
    return InvitationList(items=[InvitationRead.model_validate(row) for row in rows])


@router.delete(
    "/v1/auth/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["workspaces"],
)
async def revoke_invitation(invitation_id: UUID, identity: Manager, session: Session) -> Response:
    await workspaces.revoke_invitation(session, identity=identity, invitation_id=invitation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/auth/invitations/accept", tags=["workspaces"], dependencies=[LIMIT_BY_IP])
async def accept_invitation(
    body: InvitationAccept, session: Session, auth: Auth, response: Response
) -> TokenResponse:
    response.headers.update(NO_STORE)
    return await accounts.join(session, auth=auth, data=body)


def _member(user: User, member: Membership) -> MemberRead:
    return MemberRead(
        user_id=user.id,
        email=user.email,
        role=member.role,
        joined_at=member.created_at,
    )


@router.post("/v1/webhooks/n8n/{job_id}", status_code=status.HTTP_202_ACCEPTED, tags=["webhooks"])
async def n8n_callback(
    job_id: Annotated[str, Path(max_length=120)],
    request: Request,
    x_bai_timestamp: Annotated[str | None, Header()] = None,
    x_bai_signature: Annotated[str | None, Header()] = None,
    x_bai_secret: Annotated[str | None, Header()] = None,
) -> CallbackAccepted:
    """An n8n workflow reports on a job; verified on the raw body, queued for its owner."""
    callbacks = held(request, GatewayState).callbacks
    headers = CallbackHeaders(
        timestamp=x_bai_timestamp, signature=x_bai_signature, secret=x_bai_secret
    )
    event_id = await callbacks.receive(job_id=job_id, body=await request.body(), headers=headers)
    return CallbackAccepted(event_id=event_id)


@router.get("/v1/events", tags=["live"], response_class=StreamingResponse, responses=LIVE_EVENTS)
async def live_events(
    identity: CurrentIdentity,
    request: Request,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
) -> StreamingResponse:
    """Server-Sent Events: the workspace's status changes, resumable with Last-Event-ID."""
    state = held(request, GatewayState)
    hub, settings = state.live, state.settings
    connection = hub.open(str(identity.tenant_id))
    body = live_stream(
        hub,
        connection,
        last_event_id=last_event_id,
        heartbeat_seconds=settings.live_heartbeat_seconds,
    )
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        # The stream closes its connection itself; this covers a client gone before it began.
        background=BackgroundTask(hub.release, connection),
    )


@router.get("/v1/openapi.json", include_in_schema=False)
async def edge_openapi(request: Request) -> dict[str, Any]:
    """Every service's API under the edge's paths (dev and test; production if enabled)."""
    settings = held(request, GatewayState).settings
    if not settings.show_docs:
        raise NotFound("the API documents are not published here")
    return await openapi.aggregate(
        platform_of(request).http,
        own=request.app.openapi(),
        services=settings.service_urls,
        title="B.A.I. platform",
    )


@router.get("/v1/docs", include_in_schema=False)
async def edge_docs(request: Request) -> HTMLResponse:
    if not held(request, GatewayState).settings.show_docs:
        raise NotFound("the API documents are not published here")
    return get_swagger_ui_html(openapi_url="/v1/openapi.json", title="B.A.I. platform API")
