"""What a service's app holds while it runs, typed: ``app.state`` carries two objects.

- ``app.state.platform``: a ``Platform``, made by the platform's lifespan for every service
  (settings, database, HTTP client, identity verifier, draining hooks).
- ``app.state.service``: whatever the service's own lifespan yields (``GatewayState``,
  ``CreatorState``...), or ``None`` for a service that holds nothing more.

Code reads them through ``platform_of``, ``settings_of`` and ``held``, which check the type
once, instead of reading untyped attributes of ``app.state`` in many places.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from fastapi import FastAPI, Request

if TYPE_CHECKING:  # db and identity read the platform from here: no import cycle at runtime
    import httpx

    from bai_platform.db import Database
    from bai_platform.identity import IdentityVerifier
    from bai_platform.settings import ServiceSettings

T = TypeVar("T")


@dataclass(eq=False)
class Platform:
    """What the platform's lifespan holds for every service's api."""

    settings: "ServiceSettings"
    db: "Database"
    http: "httpx.AsyncClient"
    # None when the app does not verify identities itself (the gateway makes them).
    identity_verifier: "IdentityVerifier | None" = None
    # Called (no arguments) when the server starts draining; see runtime.DrainingServer.
    on_draining: list[Callable[[], None]] = field(default_factory=list)


def _app(source: Request | FastAPI) -> FastAPI:
    app: FastAPI = source.app if isinstance(source, Request) else source
    return app


def platform_of(source: Request | FastAPI) -> Platform:
    """The app's ``Platform`` (it exists while the lifespan runs)."""
    platform = getattr(_app(source).state, "platform", None)
    if not isinstance(platform, Platform):
        raise RuntimeError("the app's lifespan has not started")
    return platform


def settings_of(source: Request | FastAPI, kind: type[T]) -> T:
    """The service's settings, as its own settings class."""
    settings = platform_of(source).settings
    if not isinstance(settings, kind):
        raise TypeError(f"the app's settings are {type(settings).__name__}, not {kind.__name__}")
    return settings


def held(source: Request | FastAPI, kind: type[T]) -> T:
    """What the service's lifespan yielded, as its own type."""
    state = getattr(_app(source).state, "service", None)
    if not isinstance(state, kind):
        raise RuntimeError(f"the app holds no {kind.__name__} (has its lifespan started?)")
    return state
