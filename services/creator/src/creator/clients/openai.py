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
are read up to 1 MiB, and each call, name lookup included, ends within its deadline. A
reply that is not valid content fails the job saying why. The jobs:
``creator.service.engines.openai_jobs``.
"""

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from bai_contracts import GeneratedContent, PostGenerationRequested
from bai_platform.destinations import (
    DestinationRefused,
    NameNotResolved,
    Resolver,
    checked_addresses,
    send_pinned,
    system_resolver,
)
from creator.service.channels import ChannelRules, rules_for

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
