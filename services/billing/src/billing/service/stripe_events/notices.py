"""Events that only tell the workspace's people something (``bai.billing.notice.v1``)."""

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts.billing import NoticeKind
from billing.service.stripe_events.common import Handler, Rules, id_of, notice, tenant_of


def noticed(kind: NoticeKind, text: Callable[[dict[str, Any]], str]) -> Handler:
    async def handle(
        session: AsyncSession, event: dict[str, Any], obj: dict[str, Any], rules: Rules
    ) -> None:
        tenant = await tenant_of(session, obj)
        await notice(session, tenant, kind, text(obj), id_of(obj))

    return handle
