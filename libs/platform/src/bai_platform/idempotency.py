"""``Idempotency-Key`` on every create: the same key and body within 24 h answer once.

For an authenticated POST carrying the header, the first request runs and its 2xx answer
is stored under (tenant and credential, key) with a digest of the method, path and body.
A repeat with the same digest gets the stored answer again (``Idempotent-Replayed: true``); the same
key with another body is 422; a repeat while the first is still running is 409. Answers
other than 2xx are not kept, so a corrected request may reuse the key. An answer marked
``Cache-Control: no-store`` (a secret shown once) is never stored: a repeat learns that the
first request succeeded (409) but not the secret. A request whose process died mid-way
leaves a row without an answer, which is released after a minute.
"""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import LargeBinary, String, Table, delete, func, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlmodel import Field, SQLModel
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bai_platform.app_state import platform_of
from bai_platform.db import created_now
from bai_platform.errors import (
    Conflict,
    ServiceError,
    Unprocessable,
    database_busy_response,
    database_trouble,
    problem_response,
)
from bai_platform.identity import IDENTITY_HEADER

HEADER = b"idempotency-key"
KEEP_FOR = timedelta(hours=24)
ABANDONED_AFTER = timedelta(minutes=1)
REPLAYED = (b"idempotent-replayed", b"true")


class IdempotencyRecord(SQLModel):
    """A stored answer by (owner, key). Each service that takes ``Idempotency-Key`` declares
    its own table: ``class IdempotencyKey(PlannerTable, IdempotencyRecord, table=True)``.

    The owner is ``<tenant>:<subject>``: a key belongs to one credential of one workspace.
    """

    __tablename__ = "idempotency_keys"

    owner: str = Field(sa_type=String(128), primary_key=True)
    key: str = Field(sa_type=String(255), primary_key=True)
    request_hash: str = Field(sa_type=String(64))
    created_at: datetime = created_now()
    status_code: int | None = None
    response_headers: dict[str, Any] | None = Field(default=None, sa_type=JSONB(none_as_null=True))
    response_body: bytes | None = Field(default=None, sa_type=LargeBinary)


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, *, table: Table) -> None:
        self.app, self.table = app, table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _key(scope)
        owner = await _owner(scope) if key else None
        if key is None or owner is None:
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        if more is not None:  # over the body cap: let the app refuse it
            await self.app(scope, _replaying(body, more, receive), send)
            return
        digest = _digest(scope, body)
        try:
            stored = await self._claim(scope, owner, key, digest)
        except ServiceError as exc:
            await problem_response(
                status=exc.status_code, code=exc.code, detail=exc.detail, headers=exc.headers
            )(scope, receive, send)
            return
        except Exception as exc:  # no connection for the claim: 503 here, not a logged 500
            if not database_trouble(exc):
                raise
            await (await database_busy_response(Request(scope), exc))(scope, receive, send)
            return
        if stored is not None:
            await _replay(stored, send)
            return
        await self._run_and_keep(scope, _replaying(body, None, receive), send, owner, key)

    async def _claim(
        self, scope: Scope, owner: str, key: str, digest: str
    ) -> dict[str, Any] | None:
        """Take the key for this request, or return the answer stored under it."""
        t, db = self.table, platform_of(scope["app"]).db
        async with db.transaction() as session:
            await session.execute(
                delete(t).where(
                    t.c.owner == owner,
                    t.c.key == key,
                    t.c.created_at < datetime.now(UTC) - KEEP_FOR,
                )
            )
            inserted = await session.execute(
                insert(t)
                .values(owner=owner, key=key, request_hash=digest)
                .on_conflict_do_nothing()
                .returning(t.c.key)
            )
            if inserted.first() is not None:
                return None
            row = (
                (
                    await session.execute(
                        select(t).where(t.c.owner == owner, t.c.key == key).with_for_update()
                    )
                )
                .mappings()
                .one()
            )
            return await _existing(session, t, row, digest)

    async def _run_and_keep(
        self, scope: Scope, receive: Receive, send: Send, owner: str, key: str
    ) -> None:
        answer: dict[str, Any] = {"body": b""}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"], answer["headers"] = message["status"], message["headers"]
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            await self._keep(scope, owner, key, answer)

    async def _keep(self, scope: Scope, owner: str, key: str, answer: dict[str, Any]) -> None:
        t, db = self.table, platform_of(scope["app"]).db
        where = (t.c.owner == owner) & (t.c.key == key)
        async with db.transaction() as session:
            if 200 <= answer.get("status", 500) < 300:
                headers = [[n.decode(), v.decode()] for n, v in answer["headers"]]
                secret = any(n.lower() == "cache-control" and "no-store" in v for n, v in headers)
                await session.execute(
                    update(t)
                    .where(where)
                    .values(
                        status_code=answer["status"],
                        response_headers=None if secret else headers,
                        response_body=None if secret else answer["body"],
                    )
                )
            else:
                await session.execute(delete(t).where(where))


class IdempotencyKeyReused(Unprocessable):
    code = "idempotency_key_reused"


class IdempotentAnswerNotKept(Conflict):
    code = "idempotent_answer_not_kept"


class IdempotencyKeyInProgress(Conflict):
    code = "idempotency_key_in_progress"


async def _existing(session: Any, t: Table, row: Any, digest: str) -> dict[str, Any] | None:
    if row["request_hash"] != digest:
        raise IdempotencyKeyReused("this Idempotency-Key was used with another request")
    if row["status_code"] is not None and row["response_body"] is None:
        raise IdempotentAnswerNotKept(
            "the first request with this key succeeded; its answer held a secret that is "
            "shown only once"
        )
    if row["status_code"] is not None:
        return dict(row)
    if row["created_at"] < datetime.now(UTC) - ABANDONED_AFTER:  # its process died
        await session.execute(
            update(t)
            .where(t.c.owner == row["owner"], t.c.key == row["key"])
            .values(created_at=func.now())
        )
        return None
    raise IdempotencyKeyInProgress(
        "a request with this Idempotency-Key is still running", headers={"Retry-After": "1"}
    )


def _key(scope: Scope) -> str | None:
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    raw = dict(scope["headers"]).get(HEADER)
    key = raw.decode(errors="replace").strip() if raw else ""
    return key if 0 < len(key) <= 255 and key.isprintable() else None


async def _owner(scope: Scope) -> str | None:
    token = dict(scope["headers"]).get(IDENTITY_HEADER.lower().encode())
    verifier = platform_of(scope["app"]).identity_verifier
    if not token or verifier is None:
        return None
    try:
        identity = await verifier.verify(token.decode())
    except ServiceError:
        return None  # the route answers 401 itself
    return f"{identity.tenant_id}:{identity.subject}"


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body, or what was read and the message that ended the reading early."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replaying(body: bytes, pending: Message | None, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return pending if pending is not None else await receive()

    return replay


def _digest(scope: Scope, body: bytes) -> str:
    head = json.dumps([scope["method"], scope["path"], scope.get("query_string", b"").decode()])
    return hashlib.sha256(head.encode() + b"\0" + body).hexdigest()


async def _replay(stored: dict[str, Any], send: Send) -> None:
    headers = [(n.encode(), v.encode()) for n, v in stored["response_headers"]]
    await send(
        {
            "type": "http.response.start",
            "status": stored["status_code"],
            "headers": [*headers, REPLAYED],
        }
    )
    await send({"type": "http.response.body", "body": stored["response_body"]})
