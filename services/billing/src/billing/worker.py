"""Billing worker: outbox relay, the starter grant of new workspaces, the quota questions
creator and mining ask (reserve, commit, release, balance over NATS micro), stored Stripe
events processed, and grants that expire."""

from datetime import timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import (
    BalanceQuery,
    CommitCredits,
    QuotaAnswer,
    ReleaseCredits,
    ReserveCredits,
    TenantCreated,
    quota_subject,
)
from bai_platform.consumer import Subscription
from bai_platform.rpc import Endpoint, serve_rpc
from bai_platform.settings import ServiceSettings
from bai_platform.worker import WorkerContext, WorkerSpec, every
from billing.events import on_tenant_created
from billing.models import inbox, outbox
from billing.service import credits
from billing.service.plans import Catalogue
from billing.service.stripe_events import Rules, process_pending
from billing.settings import BillingSettings


async def _balance(session: AsyncSession, question: BalanceQuery) -> QuotaAnswer:
    return QuotaAnswer(
        ok=True, balances=await credits.balances(session, tenant_id=question.tenant_id)
    )


def quota_endpoints(settings: BillingSettings) -> list[Endpoint]:
    async def reserve(session: AsyncSession, question: ReserveCredits) -> QuotaAnswer:
        return await credits.reserve(session, question, starter=settings.starter_grant)

    return [
        Endpoint("reserve", quota_subject("reserve"), ReserveCredits, reserve),
        Endpoint("commit", quota_subject("commit"), CommitCredits, credits.commit),
        Endpoint("release", quota_subject("release"), ReleaseCredits, credits.release),
        Endpoint("balance", quota_subject("balance"), BalanceQuery, _balance),
    ]


def worker_spec(settings: ServiceSettings) -> WorkerSpec:
    assert isinstance(settings, BillingSettings)
    tenants = Subscription(
        durable="billing-tenant-created",
        stream="GATEWAY",
        subjects=(TenantCreated.subject,),
        handler=on_tenant_created(settings.starter_grant),
        description="billing grants new workspaces their starter credits",
    )
    return WorkerSpec(
        outbox=outbox,
        inbox=inbox,
        subscriptions=[tenants],
        tasks=[
            partial(
                serve_rpc,
                service="billing-quota",
                endpoints=quota_endpoints(settings),
                description="credit reservations",
            ),
            stripe_events,
        ],
    )


def rules_of(settings: BillingSettings) -> Rules:
    return Rules(
        catalogue=Catalogue.from_settings(settings),
        grace=timedelta(hours=settings.grant_grace_hours),
    )


async def stripe_events(ctx: WorkerContext[BillingSettings]) -> None:
    """Stripe's events are applied in order, and grants past their end expire."""
    one_pass = partial(_stripe_pass, ctx, rules_of(ctx.settings))
    await every(ctx.stop, ctx.settings.job_poll_seconds, one_pass, name="stripe-events")


async def _stripe_pass(ctx: WorkerContext[BillingSettings], rules: Rules) -> None:
    settings = ctx.settings
    await process_pending(
        ctx.db,
        rules,
        max_attempts=settings.event_max_attempts,
        wait_seconds=settings.event_wait_seconds,
    )
    async with ctx.db.transaction() as session:
        await credits.expire_due(session)
