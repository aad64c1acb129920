"""Billing worker: outbox relay, the starter grant of new workspaces, the quota questions
creator and mining ask (reserve, commit, release, balance over NATS micro), stored Stripe
events processed, and grants that expire."""

from collections.abc import Callable
from datetime import timedelta

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
from bai_platform.rpc import Endpoint, rpc_task
from bai_platform.settings import ServiceSettings
from bai_platform.worker import Task, WorkerContext, WorkerSpec, every
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
            rpc_task("billing-quota", quota_endpoints(settings), description="credit reservations"),
            _stripe_events(settings),
        ],
    )


def rules_of(settings: BillingSettings) -> Rules:
    return Rules(
        catalogue=Catalogue.from_settings(settings),
        grace=timedelta(hours=settings.grant_grace_hours),
    )


def _stripe_events(settings: BillingSettings) -> Callable[[WorkerContext], Task]:
    rules = rules_of(settings)

    def build(ctx: WorkerContext) -> Task:
        async def run_once() -> None:
            await process_pending(
                ctx.db,
                rules,
                max_attempts=settings.event_max_attempts,
                wait_seconds=settings.event_wait_seconds,
            )
            async with ctx.db.transaction() as session:
                await credits.expire_due(session)

        return every(settings.job_poll_seconds, run_once, name="stripe-events")

    return build
