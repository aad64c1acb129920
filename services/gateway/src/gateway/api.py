"""Gateway HTTP routes: public auth, JWKS, the ForwardAuth decision and the caller's identity."""

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Header, Request, Response, status

from bai_platform.db import Session
from bai_platform.errors import ServiceError, problem_response
from bai_platform.identity import IDENTITY_HEADER, CurrentIdentity
from gateway import service
from gateway.deps import Auth, Decider
from gateway.schemas import LoginRequest, MeResponse, RefreshRequest, SignupRequest, TokenResponse

router = APIRouter(tags=["auth"])

NO_STORE = {"Cache-Control": "no-store"}


@router.post("/v1/auth/signup", status_code=status.HTTP_201_CREATED)
async def signup(
    body: SignupRequest, session: Session, auth: Auth, response: Response
) -> TokenResponse:
    response.headers.update(NO_STORE)
    return await service.signup(session, auth=auth, data=body)


@router.post("/v1/auth/login")
async def login(
    body: LoginRequest, session: Session, auth: Auth, response: Response
) -> TokenResponse:
    response.headers.update(NO_STORE)
    return await service.login(session, auth=auth, data=body)


@router.post("/v1/auth/refresh")
async def refresh(
    body: RefreshRequest, session: Session, auth: Auth, response: Response
) -> TokenResponse:
    response.headers.update(NO_STORE)
    return await service.refresh(session, auth=auth, token=body.refresh_token)


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
    keys: dict[str, list[dict[str, str]]] = request.app.state.auth.ring.jwks()
    return keys


@router.api_route(
    "/auth/verify",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,
)
async def verify(
    decider: Decider,
    authorization: Annotated[str | None, Header()] = None,
    x_forwarded_uri: Annotated[str | None, Header()] = None,
) -> Response:
    try:
        identity = decider.decide(authorization=authorization, forwarded_uri=x_forwarded_uri)
    except ServiceError as exc:  # Traefik relays this answer: name the caller's path in it
        path = urlsplit(x_forwarded_uri or "").path or None
        return problem_response(
            status=exc.status_code,
            code=exc.code,
            detail=exc.detail,
            instance=path,
            headers=exc.headers,
        )
    return Response(status_code=200, headers={IDENTITY_HEADER: identity})
