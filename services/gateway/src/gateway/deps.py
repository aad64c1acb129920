"""Request dependencies of the gateway."""

from typing import Annotated

from fastapi import Depends, Request

from gateway.forward_auth import ForwardAuth
from gateway.service import AuthContext


def _auth_context(request: Request) -> AuthContext:
    context: AuthContext = request.app.state.auth
    return context


def _forward_auth(request: Request) -> ForwardAuth:
    decider: ForwardAuth = request.app.state.forward_auth
    return decider


Auth = Annotated[AuthContext, Depends(_auth_context)]
Decider = Annotated[ForwardAuth, Depends(_forward_auth)]
