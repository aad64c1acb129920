"""Billing's calls to Stripe: Checkout for a plan, the customer portal, cancelling.

Every POST carries an ``Idempotency-Key``, so no retry (the library's own, or the client's)
creates a second object: a customer's key is derived from its workspace, a checkout's or a
cancel's from the client's ``Idempotency-Key`` when it sends one (scoped to the workspace
and what it asks for), else it is fresh. Each call has one deadline for all its attempts,
``stripe_timeout_seconds``; whatever goes wrong at Stripe's end is a 502
``stripe_unavailable`` whose message names nothing of the request or the key.

Subscriptions are written by Stripe's events (``billing.service.stripe_events``); a cancel only
marks the local row ahead of the event that confirms it.

No database connection is held while Stripe answers: before each call the request's
transaction ends (``_release``: what was read stays loaded, what was written is committed,
the connection goes back to the pool) and the next statement takes a connection again. A
call that takes its whole deadline would otherwise keep a pooled connection (and any row
locks) from every other request for that long. Two first checkouts at once still end with
one customer: both ask Stripe with the same Idempotency-Key, so both get the same customer,
and the row's unique workspace lets one insert win.
"""

import asyncio
import hashlib
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

import httpx
import stripe
import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from stripe.params.checkout import SessionCreateParams

from bai_platform.errors import Conflict, FieldInvalid, ServiceError, ServiceUnavailable
from bai_platform.identity import Identity
from billing.models import Customer, Subscription
from billing.service.plans import Catalogue, Plan
from billing.service.stripe_events import IN_FORCE
from billing.settings import BillingSettings

log = structlog.get_logger(__name__)

# Statuses in which a workspace has a subscription: it changes plans in the portal.
LIVE = IN_FORCE
MAX_RESPONSE_BYTES = 1_000_000
# One retry by the library, with the same Idempotency-Key, after its first back-off (0.5 s);
# both attempts and the back-off fit in the deadline.
RETRIES = 1
_FIRST_BACKOFF = 0.5

T = TypeVar("T")


class StripeUnavailable(ServiceError):
    status_code, code = 502, "stripe_unavailable"
    # A customer created at Stripe before a later call failed is real: its row stays.
    keeps_effects = True


class BillingNotConfigured(ServiceUnavailable):
    code = "billing_not_configured"


class AlreadySubscribed(Conflict):
    code = "already_subscribed"


class NoBillingAccount(Conflict):
    code = "no_billing_account"


class NoActiveSubscription(Conflict):
    code = "no_active_subscription"


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str
    plan: str


class StripeBilling:
    """The Stripe client of the billing service, built from its settings."""

    def __init__(self, settings: BillingSettings) -> None:
        self.catalogue = Catalogue.from_settings(settings)
        self._settings = settings
        self._deadline = settings.stripe_timeout_seconds
        attempt = max((self._deadline - _FIRST_BACKOFF) / (RETRIES + 1), 0.1)
        self._http = _BoundedHTTPXClient(timeout=attempt)
        key = settings.stripe_api_key.get_secret_value()
        self._client = (
            stripe.StripeClient(
                key,
                base_addresses={"api": settings.stripe_api_base},
                http_client=self._http,
                max_network_retries=RETRIES,
            )
            if key
            else None
        )

    async def aclose(self) -> None:
        await self._http.close_async()

    async def ensure_customer(self, session: AsyncSession, *, tenant_id: UUID) -> str:
        """The workspace's Stripe customer, created at Stripe the first time it is needed."""
        known = await customer_id(session, tenant_id=tenant_id)
        if known is not None:
            return known
        await _release(session)
        created = await self._call(
            self._stripe().v1.customers.create_async(
                params={"metadata": {"tenant_id": str(tenant_id)}},
                options={"idempotency_key": f"bai-customer-{tenant_id}"},
            )
        )
        new_id = _stripe_id(created, "cus_")
        # Two first checkouts at once both get the same customer (same key): one row wins.
        await session.execute(
            insert(Customer)
            .values(tenant_id=tenant_id, stripe_customer_id=new_id)
            .on_conflict_do_nothing()
        )
        stored = await customer_id(session, tenant_id=tenant_id)
        if stored is None:
            raise ServiceError("the Stripe customer is already linked to another workspace")
        return stored

    async def checkout(
        self, session: AsyncSession, *, identity: Identity, plan_id: str, client_key: str | None
    ) -> CheckoutSession:
        """A Stripe Checkout Session selling ``plan_id`` to the workspace (owners, admins)."""
        client, plan = self._stripe(), self._plan(plan_id)
        tenant = identity.tenant_id
        if await live_subscription(session, tenant_id=tenant) is not None:
            raise AlreadySubscribed(
                "the workspace already has a subscription; change plans in the billing portal"
            )
        customer = await self.ensure_customer(session, tenant_id=tenant)
        await _release(session)  # the customer row, if new, is stored before the next call
        created = await self._call(
            client.v1.checkout.sessions.create_async(
                params=self._checkout_params(tenant, plan, customer),
                options={"idempotency_key": _key("checkout", tenant, plan.id, client=client_key)},
            )
        )
        return CheckoutSession(id=_stripe_id(created, "cs_"), url=_https(created), plan=plan.id)

    async def portal(
        self, session: AsyncSession, *, identity: Identity, client_key: str | None
    ) -> str:
        """The URL of a Stripe customer portal session for the workspace (owners, admins)."""
        client = self._stripe()
        customer = await customer_id(session, tenant_id=identity.tenant_id)
        if customer is None:
            raise NoBillingAccount("the workspace has no billing account yet; choose a plan first")
        await _release(session)
        created = await self._call(
            client.v1.billing_portal.sessions.create_async(
                params={"customer": customer, "return_url": self._url("portal_return_url")},
                options={"idempotency_key": _key("portal", identity.tenant_id, client=client_key)},
            )
        )
        return _https(created)

    async def cancel(
        self, session: AsyncSession, *, identity: Identity, client_key: str | None
    ) -> Subscription:
        """Cancel the workspace's subscription at the end of its period (owners, admins)."""
        client = self._stripe()
        row = await live_subscription(session, tenant_id=identity.tenant_id)
        if row is None:
            raise NoActiveSubscription("the workspace has no active subscription to cancel")
        sub_id = row.stripe_subscription_id
        await _release(session)  # the row stays loaded; it is written after Stripe answers
        updated = await self._call(
            client.v1.subscriptions.update_async(
                sub_id,
                params={"cancel_at_period_end": True},
                options={"idempotency_key": _key("cancel", sub_id, client=client_key)},
            )
        )
        # Left at event_created: the event that confirms this (or anything newer) still wins.
        row.cancel_at_period_end = _field(updated, "cancel_at_period_end") is True
        row.updated_at = datetime.now(UTC)
        await session.flush()
        return row

    def _stripe(self) -> stripe.StripeClient:
        if self._client is None:
            raise BillingNotConfigured("billing is not configured on this installation")
        return self._client

    def _plan(self, plan_id: str) -> Plan:
        plan = self.catalogue.get(plan_id)
        if plan is None:
            names = ", ".join(p.id for p in self.catalogue)
            raise FieldInvalid("plan", f"there is no such plan; the plans are: {names}")
        return plan

    def _url(self, setting: str) -> str:
        # Not str.format: Stripe's own {CHECKOUT_SESSION_ID} may be in the template.
        template: str = getattr(self._settings, setting)
        return template.replace("{base}", self._settings.public_base_url.rstrip("/"))

    def _checkout_params(self, tenant: UUID, plan: Plan, customer: str) -> SessionCreateParams:
        metadata = {"tenant_id": str(tenant), "plan": plan.id}
        return {
            "mode": "subscription",
            "line_items": [{"price": plan.stripe_price_id, "quantity": 1}],
            "customer": customer,
            "client_reference_id": str(tenant),
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
            "success_url": self._url("checkout_success_url"),
            "cancel_url": self._url("checkout_cancel_url"),
        }

    async def _call(self, request: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._deadline):
                return await request
        except (stripe.StripeError, TimeoutError) as exc:
            _log_failure(exc)
            raise StripeUnavailable(
                "Stripe could not be reached or refused the request; try again in a moment"
            ) from exc


async def _release(session: AsyncSession) -> None:
    """End the session's transaction before a call to Stripe, so its connection goes back to
    the pool (see the module docstring); the session takes a new one when next used."""
    await session.commit()


async def customer_id(session: AsyncSession, *, tenant_id: UUID) -> str | None:
    """The workspace's Stripe customer id, if it has one."""
    query = select(col(Customer.stripe_customer_id)).where(col(Customer.tenant_id) == tenant_id)
    return await session.scalar(query)


async def live_subscription(session: AsyncSession, *, tenant_id: UUID) -> Subscription | None:
    """The workspace's active, trialing or past-due subscription, the latest if several."""
    return await session.scalar(
        select(Subscription)
        .where(col(Subscription.tenant_id) == tenant_id, col(Subscription.status).in_(LIVE))
        .order_by(col(Subscription.event_created).desc())
        .limit(1)
    )


async def current_subscription(session: AsyncSession, *, tenant_id: UUID) -> Subscription | None:
    """The subscription the workspace is on: its live one, else its latest (say, canceled)."""
    return await session.scalar(
        select(Subscription)
        .where(col(Subscription.tenant_id) == tenant_id)
        .order_by(col(Subscription.status).in_(LIVE).desc(), col(Subscription.event_created).desc())
        .limit(1)
    )


def _key(action: str, *scope: object, client: str | None) -> str:
    """A Stripe Idempotency-Key: the client's key, scoped to what it asks for (the same key
    for another workspace or plan is another request), else a fresh one."""
    if client is None:
        return f"bai-{action}-{uuid4()}"
    material = "\x1f".join(str(part) for part in (action, *scope, client))
    return f"bai-{action}-{hashlib.sha256(material.encode()).hexdigest()[:40]}"


def _field(answer: stripe.StripeObject, name: str) -> object:
    """One field of Stripe's answer, None when absent (the only way answers are read)."""
    # Not dict.get: a StripeObject is no dict and has none.
    if name not in answer:
        return None
    return answer[name]


def _stripe_id(answer: stripe.StripeObject, prefix: str) -> str:
    value = _field(answer, "id")
    if not isinstance(value, str) or not value.startswith(prefix) or len(value) > 120:
        raise _unexpected("id")
    return value


def _https(answer: stripe.StripeObject) -> str:
    value = _field(answer, "url")
    if not isinstance(value, str) or not value.startswith("https://") or len(value) > 4096:
        raise _unexpected("url")
    return value


def _unexpected(field: str) -> StripeUnavailable:
    log.warning("stripe_answer_unexpected", field=field)
    return StripeUnavailable("Stripe answered with something unexpected; try again in a moment")


def _log_failure(exc: Exception) -> None:
    # Never the message: Stripe's may quote a masked key, the library's the raw body.
    if isinstance(exc, stripe.StripeError):
        log.warning(
            "stripe_call_failed",
            error=type(exc).__name__,
            status=exc.http_status,
            stripe_code=exc.code,
            request_id=exc.request_id,
        )
    else:
        log.warning("stripe_call_failed", error="deadline")


class _BoundedHTTPXClient(stripe.HTTPXClient):
    """stripe's httpx client, with the form body sent as ``content`` (httpx deprecates a
    ``data`` string, and warnings are errors in our tests) and any answer larger than
    ``MAX_RESPONSE_BYTES`` refused while it is read (OWASP API10)."""

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            async with self._client_async.stream(
                method, url, headers=headers, content=post_data, timeout=self._timeout
            ) as response:
                body = await _capped(response)
        except stripe.APIConnectionError:
            raise
        except Exception as exc:
            self._handle_request_error(exc)
        return body, response.status_code, response.headers

    async def close_async(self) -> None:
        await self._client_async.aclose()


async def _capped(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]  # stripe's errors are unannotated
                f"Stripe's answer exceeds {MAX_RESPONSE_BYTES} bytes", should_retry=False
            )
    return bytes(body)
