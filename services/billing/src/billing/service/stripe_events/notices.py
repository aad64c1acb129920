"""Events that only tell the workspace's people something (``bai.billing.notice.v1``)."""

from collections.abc import Callable

import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts.billing import NoticeKind
from billing.service.stripe_events.common import (
    Handler,
    Rules,
    id_of,
    notice,
    object_of,
    tenant_of,
)


def noticed(
    kind: NoticeKind,
    text: Callable[[stripe.StripeObject], str],
    about: type[stripe.StripeObject] = stripe.Invoice,
) -> Handler:
    """A handler telling the workspace ``text`` about the event's object (an ``about``)."""

    async def handle(session: AsyncSession, event: stripe.Event, rules: Rules) -> None:
        obj = object_of(event, about)
        tenant = await tenant_of(session, obj)
        await notice(session, tenant, kind, text(obj), id_of(obj))

    return handle
