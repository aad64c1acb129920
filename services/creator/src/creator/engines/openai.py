"""The OpenAI-compatible engine: chat completions over HTTP, run by the worker.

``POST {base_url}/chat/completions`` with ``Authorization: Bearer <key>`` and
``{"model", "messages": [system, user], "temperature": 0.7,
"response_format": {"type": "json_object"}}``. The system message carries the brand's
voice and the channel's limits and asks for one JSON object with the content fields;
the reply's ``choices[0].message.content`` is read as that object (a fenced ```json block
is accepted), or, when it is not JSON at all, as the post's text. Replies are parsed in
time linear in their size (no backtracking patterns): the engine is the tenant's.

Failures that may pass (timeouts, connection errors, 408, 409, 429, 5xx) are tried again
with backoff up to ``dispatch_max_attempts``; others (401, 403, 404, 400: a wrong key,
model or URL) fail the job at once with the provider's message, size-capped. Replies
are read up to 1 MiB. A reply that is not valid content fails the job saying why.
"""

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography.fernet import Fernet, InvalidToken
from pydantic import ValidationError
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import GeneratedContent, PostGenerationRequested
from bai_platform.destinations import (
    DestinationRefused,
    NameNotResolved,
    Resolver,
    checked_addresses,
    send_pinned,
    system_resolver,
)
from bai_platform.webhooks import backoff_delay
from creator.channels import ChannelRules, rules_for
from creator.engines.config import OPENAI_COMPATIBLE
from creator.generation import complete, fail, request_of
from creator.models import EngineSettings, GenerationJob

RETRYABLE = frozenset({408, 409, 425, 429})
MAX_REPLY_BYTES = 1024 * 1024
FENCE = "```"


class EngineFailed(Exception):
    """The engine gave no content; ``retryable`` says whether trying later may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message[:1000])
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str


def messages_for(request: PostGenerationRequested) -> list[dict[str, str]]:
    """The system and user messages asking for one post."""
    rules = rules_for(request.channel)
    voice = request.voice
    system = "\n".join(
        line
        for line in (
            f"You write social media and marketing posts for {request.brand_name}.",
            f"Tone: {voice.tone}." if voice.tone else "",
            f"Audience: {voice.audience}." if voice.audience else "",
            f"Values: {', '.join(voice.values)}." if voice.values else "",
            f"Use these words where natural: {', '.join(voice.keywords)}."
            if voice.keywords
            else "",
            f"Never use these words: {', '.join(voice.avoid)}." if voice.avoid else "",
            *(f"Example post: {example}" for example in voice.examples[:3]),
            f"Write in the language with code {voice.language}." if voice.language else "",
            _format(rules),
        )
        if line
    )
    user = "\n".join(
        line
        for line in (
            f"Channel: {request.channel}.",
            f"Campaign: {request.campaign_name}.",
            f"Brief: {request.brief}" if request.brief else "",
            f"Goal: {request.goal}" if request.goal else "",
            f"Publication time: {request.scheduled_at.isoformat()}.",
            f"Previous version: {request.previous_text}" if request.previous_text else "",
            f"Editor's note for this version: {request.note}" if request.note else "",
        )
        if line
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _format(rules: ChannelRules) -> str:
    fields = ['"text"', '"hashtags" (a list, without #)', '"call_to_action"']
    if rules.wants_title:
        fields.insert(0, '"title"')
    if rules.wants_image:
        fields += ['"image_prompt"', '"alt_text"']
    return (
        f"Answer with one JSON object with the fields {', '.join(fields)}. "
        f"The text has at most {rules.max_chars} characters"
        + (" including the hashtags" if rules.hashtags_in_text else "")
        + f"; at most {rules.max_hashtags} hashtags."
    )


async def generate(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    request: PostGenerationRequested,
    *,
    deadline_seconds: float,
    allow_private: bool = False,
) -> GeneratedContent:
    """One chat completion, read as the post's content."""
    raw = await chat_completion(
        client,
        endpoint,
        messages_for(request),
        deadline_seconds=deadline_seconds,
        json_mode=True,
        allow_private=allow_private,
    )
    return parse_reply(raw, request.channel)


async def chat_completion(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    messages: list[dict[str, str]],
    *,
    deadline_seconds: float,
    json_mode: bool = False,
    allow_private: bool = False,
    resolver: Resolver = system_resolver,
) -> bytes:
    """The raw answer of ``/chat/completions``, or EngineFailed.

    The engine's name is resolved and checked (internal addresses refused unless
    ``allow_private``), and the call connects to a checked address, never to a second
    lookup of the name (``bai_platform.destinations``). The whole call, lookup included,
    ends within ``deadline_seconds``: httpx times each read on its own, so without it a
    server dripping one byte at a time would hold the call for ever.
    """
    try:
        async with asyncio.timeout(deadline_seconds):
            return await _exchange(
                client, endpoint, messages, deadline_seconds, json_mode, allow_private, resolver
            )
    except TimeoutError:
        raise EngineFailed(
            f"the engine did not answer within {deadline_seconds:g} s", retryable=True
        ) from None


async def _exchange(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    messages: list[dict[str, str]],
    deadline_seconds: float,
    json_mode: bool,
    allow_private: bool,
    resolver: Resolver,
) -> bytes:
    body: dict[str, Any] = {"model": endpoint.model, "messages": messages, "temperature": 0.7}
    if json_mode:
        body["response_format"] = {"type": "json_object"}
    headers = {"Authorization": f"Bearer {endpoint.api_key}", "Content-Type": "application/json"}
    url = httpx.URL(f"{endpoint.base_url.rstrip('/')}/chat/completions")
    try:
        addresses = await checked_addresses(
            str(url), allow_private=allow_private, resolver=resolver
        )
    except DestinationRefused as refused:
        transient = isinstance(refused, NameNotResolved) and refused.transient
        raise EngineFailed(str(refused), retryable=transient) from refused
    try:
        response = await send_pinned(
            client,
            "POST",
            url,
            addresses,
            headers=headers,
            read_timeout=deadline_seconds,
            content=json.dumps(body).encode(),
        )
        try:
            raw = await _read_capped(response)
        finally:
            await response.aclose()
    except httpx.TimeoutException as exc:
        raise EngineFailed(
            f"the engine did not answer within {deadline_seconds:g} s", retryable=True
        ) from exc
    except httpx.HTTPError as exc:
        reason = type(exc).__name__
        raise EngineFailed(f"could not reach the engine: {reason}", retryable=True) from exc
    if response.status_code >= 400:
        raise _refusal(response.status_code, raw)
    return raw


def completion_text(raw: bytes) -> str:
    """The assistant's words in a chat-completions answer."""
    try:
        text = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError, RecursionError) as exc:
        raise EngineFailed("the engine's reply is not a chat completion", retryable=False) from exc
    if not isinstance(text, str) or not text.strip():
        raise EngineFailed("the engine's reply has no content", retryable=False)
    return text.strip()


async def _read_capped(response: httpx.Response) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise EngineFailed("the engine's reply is larger than 1 MiB", retryable=False)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_reply(raw: bytes, channel: str) -> GeneratedContent:
    """The content in a chat-completions reply, or EngineFailed saying what is wrong."""
    text = completion_text(raw)
    try:
        data: Any = json.loads(unfenced(text))
    except (ValueError, RecursionError):  # nested deeper than the reader goes: not JSON
        data = {"text": text}
    if not isinstance(data, dict):
        data = {"text": text}
    return _checked(data, channel)


def unfenced(text: str) -> str:
    """What a fenced block (```json ... ```) holds, or the text itself.

    Plain string operations, linear in the reply: a reply is written by whoever runs the
    engine, and a backtracking pattern here once took hours over a crafted reply.
    """
    if len(text) < 2 * len(FENCE) or not (text.startswith(FENCE) and text.endswith(FENCE)):
        return text
    inner = text[len(FENCE) : -len(FENCE)]
    return inner.removeprefix("json").strip()


def _checked(data: dict[str, Any], channel: str) -> GeneratedContent:
    rules = rules_for(channel)
    try:
        content = GeneratedContent.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "content"
        raise EngineFailed(
            f"the engine's content is not valid: {where}: {first['msg']}", retryable=False
        ) from exc
    if not content.text.strip():
        raise EngineFailed("the engine's content has no text", retryable=False)
    if len(content.text) > rules.max_chars:
        raise EngineFailed(
            f"the engine wrote {len(content.text)} characters; {channel} allows {rules.max_chars}",
            retryable=True,  # another attempt may well fit
        )
    tags = list(dict.fromkeys(h.strip().lstrip("#") for h in content.hashtags if h.strip("# ")))
    return content.model_copy(update={"hashtags": tags[: rules.max_hashtags]})


def _refusal(status: int, raw: bytes) -> EngineFailed:
    retryable = status in RETRYABLE or status >= 500
    try:
        detail = json.loads(raw)["error"]["message"]
    except (ValueError, KeyError, TypeError, RecursionError):
        detail = " ".join(raw.decode("utf-8", "replace").split())[:300]
    return EngineFailed(f"the engine answered {status}: {str(detail)[:300]}", retryable=retryable)


# ---- jobs ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Claimed:
    job_id: str
    endpoint: Endpoint
    request: PostGenerationRequested


async def claim(
    session: AsyncSession, *, box: Fernet, limit: int = 10, per_workspace: int = 2
) -> list[Claimed]:
    """Take queued jobs of this engine whose turn has come; they run after this commits.

    Fair across workspaces: a workspace never has more than ``per_workspace`` calls in
    flight (counted from the jobs being dispatched, so across every worker), and turns go
    round the workspaces (each one's first due job, then each one's second...), so one
    workspace with many or slow jobs cannot hold up another's.
    """
    query = (
        select(GenerationJob)
        .where(GenerationJob.id.in_(_turns(limit, per_workspace)), *_DUE)
        .with_for_update(skip_locked=True)
    )
    claimed = []
    for job in (await session.scalars(query)).all():
        endpoint = await _endpoint(session, job, box)
        if endpoint is None:
            continue
        job.state, job.attempts, job.next_attempt_at = "dispatching", job.attempts + 1, _now()
        claimed.append(Claimed(job_id=job.id, endpoint=endpoint, request=request_of(job)))
    await session.flush()
    return claimed


_DUE = (
    GenerationJob.state == "queued",
    GenerationJob.engine == OPENAI_COMPATIBLE,
    GenerationJob.credits == "reserved",
    GenerationJob.next_attempt_at <= func.now(),
)


def _turns(limit: int, per_workspace: int) -> Select[tuple[str]]:
    """The ids of the next ``limit`` due jobs, round-robin across workspaces."""
    running = (
        select(GenerationJob.tenant_id, func.count().label("calls"))
        .where(GenerationJob.state == "dispatching", GenerationJob.engine == OPENAI_COMPATIBLE)
        .group_by(GenerationJob.tenant_id)
        .subquery()
    )
    place = func.row_number().over(
        partition_by=GenerationJob.tenant_id, order_by=GenerationJob.next_attempt_at
    )
    due = (
        select(
            GenerationJob.id,
            GenerationJob.next_attempt_at,
            (func.coalesce(running.c.calls, 0) + place).label("turn"),
        )
        .outerjoin(running, running.c.tenant_id == GenerationJob.tenant_id)
        .where(*_DUE)
        .subquery()
    )
    return (
        select(due.c.id)
        .where(due.c.turn <= per_workspace)
        .order_by(due.c.turn, due.c.next_attempt_at)
        .limit(limit)
    )


async def _endpoint(session: AsyncSession, job: GenerationJob, box: Fernet) -> Endpoint | None:
    settings = await session.get(EngineSettings, job.tenant_id)
    if settings is None or settings.engine != OPENAI_COMPATIBLE or not settings.base_url:
        await fail(session, job, error="the workspace's engine changed; regenerate the post")
        return None
    try:
        key = box.decrypt(settings.api_key or b"").decode()
    except InvalidToken:
        await fail(session, job, error="the engine's API key cannot be read; save the engine again")
        return None
    return Endpoint(base_url=settings.base_url, model=settings.model or "", api_key=key)


async def record_content(session: AsyncSession, *, job_id: str, content: GeneratedContent) -> None:
    job = await session.get(GenerationJob, job_id, with_for_update=True, populate_existing=True)
    if job is not None and job.state == "dispatching":
        await complete(session, job, content=content)


async def record_failure(
    session: AsyncSession,
    *,
    job_id: str,
    failure: EngineFailed,
    max_attempts: int,
    backoff: tuple[float, float],
) -> None:
    """Try again later when that may help; otherwise fail the job with the reason."""
    job = await session.get(GenerationJob, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.state != "dispatching":
        return
    job.error = str(failure)
    if failure.retryable and job.attempts < max_attempts:
        delay = backoff_delay(job.attempts, base=backoff[0], cap=backoff[1])
        job.state, job.next_attempt_at = "queued", _now() + timedelta(seconds=delay)
        return
    await fail(session, job, error=f"after {job.attempts} attempt(s): {failure}")


def _now() -> datetime:
    return datetime.now(UTC)


async def recover_stuck(
    session: AsyncSession, *, older_than: timedelta, max_attempts: int, limit: int = 100
) -> int:
    """Jobs left mid-call (a worker that crashed or was stopped) past their deadline: tried
    again while attempts remain, otherwise failed saying so (their credits released).

    Once each: the rows are locked and leave ``dispatching``, and a late answer of the
    lost call finds the job no longer waiting for it (``record_content``)."""
    query = (
        select(GenerationJob)
        .where(
            GenerationJob.state == "dispatching",
            GenerationJob.engine == OPENAI_COMPATIBLE,
            GenerationJob.next_attempt_at < _now() - older_than,
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    jobs = list((await session.scalars(query)).all())
    for job in jobs:
        job.error = "the engine call was interrupted and did not finish"
        if job.attempts < max_attempts:
            job.state, job.next_attempt_at = "queued", _now()
        else:
            await fail(session, job, error=f"after {job.attempts} attempt(s): {job.error}")
    return len(jobs)
