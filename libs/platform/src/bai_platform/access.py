"""Who may call which route: one rule, applied at the edge and again by every service.

The gateway's ForwardAuth applies it before it mints an identity, and every service's
``require_identity`` applies it again to the identity it verified, from the request's
method and path. So an identity that reaches a service some other way (a visitor's, or a
read-only key's) is held to what the edge would have allowed; a service never trusts
that the edge was in the path.

- Scopes. People carry ``api`` (everything their role allows). API keys carry service
  scopes: ``<service>:read`` for GET, HEAD and OPTIONS, ``<service>:write`` for the rest,
  and reach only service paths (``/v1/<service>/...``): a key never manages keys, members
  or sessions, and ``api`` counts only for a person.
- Visitors (a website chat visitor token: credential ``visitor``, role ``visitor``, scope
  ``chat``) reach only the chat paths (``CHAT_PATH_PREFIX``), with GET, HEAD or POST.
  Anything that looks like a visitor in any of the three is held to that.
- Roles. Everyone else needs a workspace role (owner, admin, editor or viewer), and a
  viewer only reads on service paths. Routes may ask for more (``Identity.require_role``).
- Audience. The identity token names the one service it was minted for
  (``bai-<service>``, the gateway's own routes ``bai-gateway``): a token for planner is
  refused by creator.
"""

from collections.abc import Collection

from bai_contracts import CHAT_PATH_PREFIX, VISITOR_CREDENTIAL, VISITOR_ROLE, VISITOR_SCOPE
from bai_platform.errors import Forbidden

FULL_ACCESS = "api"
SCOPED_SERVICES = ("planner", "creator", "mining", "billing")
KEY_SCOPES = frozenset(
    f"{service}:{access}" for service in SCOPED_SERVICES for access in ("read", "write")
)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What a visitor may do on a chat path: what the chat's CORS preflight lets a browser do.
VISITOR_METHODS = frozenset({"GET", "HEAD", "POST"})
USER_CREDENTIAL, API_KEY_CREDENTIAL = "user", "api_key"
# The workspace roles, and the sets routes ask for (``bai_platform.identity.RequireRole``);
# in the order a refusal names them.
OWNER, ADMIN, EDITOR, VIEWER = "owner", "admin", "editor", "viewer"
ADMINS = (OWNER, ADMIN)
EDITORS = (OWNER, ADMIN, EDITOR)
MEMBER_ROLES = frozenset({OWNER, ADMIN, EDITOR, VIEWER})
WRITER_ROLES = frozenset(EDITORS)
GATEWAY_AUDIENCE = "bai-gateway"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"


class VisitorNotAllowedHere(Forbidden):
    code = "visitor_not_allowed_here"


class UnknownCredential(Forbidden):
    code = "unknown_credential"


class NoWorkspaceRole(Forbidden):
    code = "no_workspace_role"


def service_audience(service: str) -> str:
    """The audience of the identity tokens a service accepts."""
    return f"bai-{service}"


def service_of(path: str) -> str | None:
    """The service a path belongs to, or None for the gateway's own (``/v1/auth``...)."""
    parts = path.split("/", 3)
    if len(parts) < 3 or parts[1] != "v1" or parts[2] not in SCOPED_SERVICES:
        return None
    return parts[2]


def audience_for(path: str) -> str:
    """The audience to mint an identity for a request to ``path`` with."""
    service = service_of(path)
    return GATEWAY_AUDIENCE if service is None else service_audience(service)


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs, or None for routes outside the services (``/v1/auth``...)."""
    service = service_of(path)
    if service is None:
        return None
    return f"{service}:{'read' if method.upper() in READ_METHODS else 'write'}"


def allows(granted: Collection[str], needed: str | None, *, credential: str = "user") -> bool:
    """Whether these scopes reach a route needing ``needed`` (None: people only)."""
    if FULL_ACCESS in granted and credential == USER_CREDENTIAL:
        return True
    return needed is not None and needed in granted


def is_chat_path(path: str) -> bool:
    """Under the chat prefix and nothing that a later hop could resolve elsewhere."""
    if not path.startswith(CHAT_PATH_PREFIX) or "%" in path or "\\" in path:
        return False
    segments = path[len(CHAT_PATH_PREFIX) :].split("/")
    return not any(segment in {".", ".."} for segment in segments) and "//" not in path


def check(
    *, credential: str, roles: Collection[str], scopes: Collection[str], method: str, path: str
) -> None:
    """Raise the 403 this request earns, or return if the rule lets it through."""
    if _is_visitor(credential, roles, scopes):
        _check_visitor(credential, roles, scopes, method=method, path=path)
        return
    if credential not in (USER_CREDENTIAL, API_KEY_CREDENTIAL):
        raise UnknownCredential(f"the credential type {credential!r} is not accepted here")
    needed = required_scope(method, path)
    if not allows(scopes, needed, credential=credential):
        raise InsufficientScope(f"this credential lacks the scope {needed or FULL_ACCESS}")
    _check_role(roles, method=method, path=path)


def _is_visitor(credential: str, roles: Collection[str], scopes: Collection[str]) -> bool:
    return credential == VISITOR_CREDENTIAL or VISITOR_ROLE in roles or VISITOR_SCOPE in scopes


def _check_visitor(
    credential: str, roles: Collection[str], scopes: Collection[str], *, method: str, path: str
) -> None:
    if not is_chat_path(path):
        raise VisitorNotAllowedHere("a visitor token is accepted only by the website chat")
    if method.upper() not in VISITOR_METHODS:
        raise VisitorNotAllowedHere("a visitor may only read and post in the website chat")
    # All three or nothing: a half-visitor is not something the gateway mints.
    if credential != VISITOR_CREDENTIAL or VISITOR_ROLE not in roles or VISITOR_SCOPE not in scopes:
        raise VisitorNotAllowedHere("this identity is not a website visitor")


def _check_role(roles: Collection[str], *, method: str, path: str) -> None:
    if MEMBER_ROLES.isdisjoint(roles):
        raise NoWorkspaceRole("this needs a role in the workspace")
    writes_a_service = service_of(path) is not None and method.upper() not in READ_METHODS
    if writes_a_service and WRITER_ROLES.isdisjoint(roles):
        raise Forbidden("a viewer may only read")
