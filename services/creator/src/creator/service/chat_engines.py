"""Who writes a chat reply: the workspace's engine, answering at once.

- built in: the knowledge snippet that best matches the question, in the widget's tone;
- OpenAI-compatible: a chat completion with the widget's knowledge, voice and the
  conversation so far;
- n8n: the workflow is POSTed ``{"kind": "chat", ...}`` signed like every dispatch and
  answers the same request with ``{"reply": "..."}`` (n8n's "Respond to Webhook").
"""

import json

import httpx
from cryptography.fernet import Fernet

from bai_platform.webhooks import WebhookDispatcher
from creator.clients.openai import Endpoint, EngineFailed, chat_completion, completion_text
from creator.models import ChatMessage, ChatWidget, EngineSettings
from creator.service.chat import Writer, builtin_reply
from creator.service.engines.config import N8N, OPENAI_COMPATIBLE


def writer_for(
    settings: EngineSettings | None,
    *,
    box: Fernet,
    client: httpx.AsyncClient,
    dispatcher: WebhookDispatcher,
    deadline_seconds: float,
    allow_private: bool = False,
) -> Writer:
    if settings is not None and settings.engine == OPENAI_COMPATIBLE and settings.base_url:
        endpoint = Endpoint(
            base_url=settings.base_url,
            model=settings.model or "",
            api_key=box.decrypt(settings.api_key or b"").decode(),
        )
        return _openai(client, endpoint, deadline_seconds, allow_private)
    if settings is not None and settings.engine == N8N and settings.webhook_url:
        secret = box.decrypt(settings.secret or b"").decode()
        return _n8n(dispatcher, settings.webhook_url, secret, settings.accept_secret_header)
    return _builtin


async def _builtin(widget: ChatWidget, history: list[ChatMessage], text: str) -> str:
    return builtin_reply(widget, text)


def _openai(
    client: httpx.AsyncClient, endpoint: Endpoint, deadline_seconds: float, allow_private: bool
) -> Writer:
    async def write(widget: ChatWidget, history: list[ChatMessage], text: str) -> str:
        raw = await chat_completion(
            client,
            endpoint,
            messages_for(widget, history, text),
            deadline_seconds=deadline_seconds,
            allow_private=allow_private,
        )
        return completion_text(raw)[:2000]

    return write


def messages_for(widget: ChatWidget, history: list[ChatMessage], text: str) -> list[dict[str, str]]:
    knowledge = "\n".join(f"- {s['title']}: {s['text']}" for s in widget.knowledge)
    tone = widget.voice.get("tone")
    avoid = ", ".join(widget.voice.get("avoid", []))
    system = "\n".join(
        line
        for line in (
            f"You answer visitors of {widget.name}'s website in a short, helpful message.",
            f"Tone: {tone}." if tone else "",
            f"Never use these words: {avoid}." if avoid else "",
            "Answer only from this knowledge; when it does not say, tell the visitor the team "
            "will follow up.",
            knowledge or "(no knowledge given)",
        )
        if line
    )
    turns = [
        {"role": "user" if m.role == "visitor" else "assistant", "content": m.text} for m in history
    ]
    return [{"role": "system", "content": system}, *turns, {"role": "user", "content": text}]


def _n8n(dispatcher: WebhookDispatcher, url: str, secret: str, secret_header: bool) -> Writer:
    async def write(widget: ChatWidget, history: list[ChatMessage], text: str) -> str:
        payload = {
            "kind": "chat",
            "tenant_id": str(widget.tenant_id),
            "widget_id": str(widget.id),
            "message": text,
            "history": [{"role": m.role, "text": m.text} for m in history],
            "knowledge": widget.knowledge,
            "voice": widget.voice,
        }
        delivered = await dispatcher.dispatch(
            url=url, payload=payload, secret=secret, secret_header=secret_header
        )
        try:
            answer = json.loads(delivered.body)["reply"]
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise EngineFailed(
                'the workflow did not answer {"reply": ...}', retryable=False
            ) from exc
        if not isinstance(answer, str) or not answer.strip():
            raise EngineFailed("the workflow's reply is empty", retryable=False)
        return answer.strip()[:2000]

    return write
