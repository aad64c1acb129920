"""Who may do what on NATS: one user per service, and the allow lists nats-server enforces.

A service publishes only its own facts (``bai.<service>.>``), its dead letters
(``bai.dlq.<service>.>``) and the RPC questions it asks; it subscribes only to its own
inbox prefix (``_INBOX.<service>.>``, so no service reads another's replies), the RPC
endpoints it serves (answering through ``allow_responses``) and the JetStream consumers
named in ``ROLES``. Everything else is denied. JetStream is reached through its API
subjects, so the table grants exactly these, per stream:

- its own stream and the dead-letter stream: INFO, CREATE, UPDATE (workers provision them);
- a stream it consumes: INFO and CREATE only (a worker may create a missing stream with
  the contract's configuration before its owner starts; CREATE never changes an existing
  stream), plus its durable consumers on it: CREATE, INFO, MSG.NEXT and ``$JS.ACK``;
- a stream it follows live (the gateway's feed): INFO, ephemeral consumers, flow control.

Subjects and stream names come from ``bai_contracts``; the consumer names are checked
against each worker's real subscriptions by ``tests/test_nats_permissions_match_workers.py``.
``render_authorization`` writes the nats-server ``authorization`` block from the table, for
the local stack (literal passwords) and for Kubernetes (``$NATS_PASSWORD_<SERVICE>``).
"""

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bai_contracts import (
    DEAD_LETTER_STREAM,
    STREAMS,
    WIDGET_LOOKUP_SUBJECT,
    callback_delivery_subject,
    quota_subject,
)

ADMIN_USER = "admin"
JS_API = "$JS.API"
QUOTA_OPERATIONS = ("reserve", "commit", "release", "balance")
CALLBACK_OWNERS = ("planner", "creator", "mining")
REGENERATE = "python -m bai_platform.nats_permissions > deploy/k8s/base/nats/authorization.conf"


@dataclass(frozen=True, slots=True)
class Consumer:
    """A durable JetStream consumer a service creates and pulls from."""

    stream: str
    durable: str


@dataclass(frozen=True, slots=True)
class Role:
    """Everything one service does on NATS."""

    service: str
    consumes: tuple[Consumer, ...] = ()
    serves: tuple[str, ...] = ()
    asks: tuple[str, ...] = ()
    follows: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Permissions:
    publish: list[str]
    subscribe: list[str]
    allow_responses: bool = field(default=False)


def stream_of(service: str) -> str:
    return next(spec.name for spec in STREAMS if spec.service == service)


ROLES: tuple[Role, ...] = (
    Role(
        "gateway",
        consumes=(Consumer(stream_of("billing"), "gateway-subscription-changed"),),
        asks=(*(callback_delivery_subject(s) for s in CALLBACK_OWNERS), WIDGET_LOOKUP_SUBJECT),
        follows=tuple(stream_of(s) for s in ("planner", "creator", "mining", "billing")),
    ),
    Role(
        "planner",
        consumes=(
            Consumer(stream_of("creator"), "planner-content"),
            Consumer(stream_of("planner"), "planner-publish-callbacks"),
        ),
        serves=(callback_delivery_subject("planner"),),
    ),
    Role(
        "creator",
        consumes=(
            Consumer(stream_of("planner"), "creator-campaign-created"),
            Consumer(stream_of("planner"), "creator-generation-requested"),
            Consumer(stream_of("creator"), "creator-workflow-callbacks"),
        ),
        serves=(callback_delivery_subject("creator"), WIDGET_LOOKUP_SUBJECT),
        asks=tuple(quota_subject(op) for op in ("reserve", "commit", "release")),
    ),
    Role(
        "mining",
        consumes=(Consumer(stream_of("mining"), "mining-workflow-callbacks"),),
        serves=(callback_delivery_subject("mining"),),
        asks=tuple(quota_subject(op) for op in ("reserve", "commit")),
    ),
    Role(
        "billing",
        consumes=(Consumer(stream_of("gateway"), "billing-tenant-created"),),
        serves=tuple(quota_subject(op) for op in QUOTA_OPERATIONS),
    ),
)


def role_of(service: str) -> Role:
    return next(role for role in ROLES if role.service == service)


def inbox_prefix(user: str) -> str:
    """Where ``user``'s replies arrive; only ``user`` may subscribe below it."""
    return f"_INBOX.{user}"


def _own_streams(service: str) -> list[str]:
    subjects = []
    for stream in (stream_of(service), DEAD_LETTER_STREAM.name):
        subjects += [f"{JS_API}.STREAM.{verb}.{stream}" for verb in ("INFO", "CREATE", "UPDATE")]
    return subjects


def _consumer(consumer: Consumer) -> list[str]:
    stream, durable = consumer.stream, consumer.durable
    return [
        f"{JS_API}.CONSUMER.CREATE.{stream}.{durable}",
        f"{JS_API}.CONSUMER.CREATE.{stream}.{durable}.>",
        f"{JS_API}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
        f"{JS_API}.CONSUMER.INFO.{stream}.{durable}",
        f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def _foreign_streams(role: Role) -> list[str]:
    consumed = {c.stream for c in role.consumes} - {stream_of(role.service)}
    subjects = []
    for stream in sorted(consumed):
        subjects += [f"{JS_API}.STREAM.INFO.{stream}", f"{JS_API}.STREAM.CREATE.{stream}"]
    return subjects


def _followed(stream: str) -> list[str]:
    """An ordered (ephemeral, push, flow-controlled) consumer: read-only by construction."""
    return [
        f"{JS_API}.STREAM.INFO.{stream}",
        f"{JS_API}.CONSUMER.CREATE.{stream}",
        f"$JS.FC.{stream}.>",
    ]


def permissions(role: Role) -> Permissions:
    """The allow lists of ``role``'s user; nats-server denies everything not listed."""
    publish = [f"bai.{role.service}.>", f"bai.dlq.{role.service}.>", *role.asks]
    publish += _own_streams(role.service) + _foreign_streams(role)
    for consumer in role.consumes:
        publish += _consumer(consumer)
    for stream in role.follows:
        publish += _followed(stream)
    subscribe = [f"{inbox_prefix(role.service)}.>", *role.serves]
    if role.serves:
        subscribe.append("$SRV.>")  # micro discovery: PING, INFO and STATS
    return Permissions(
        publish=_unique(publish), subscribe=_unique(subscribe), allow_responses=bool(role.serves)
    )


def _unique(subjects: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(subjects))


def password_variable(user: str) -> str:
    return f"NATS_PASSWORD_{user.upper()}"


def _user_block(user: str, password: str, rules: Permissions | None) -> str:
    lines = [f"    {{ user: {json.dumps(user)}, password: {password}"]
    if rules is not None:
        lines.append("      permissions: {")
        lines.append(f"        publish: {{ allow: {_list(rules.publish)} }}")
        lines.append(f"        subscribe: {{ allow: {_list(rules.subscribe)} }}")
        if rules.allow_responses:
            lines.append("        allow_responses: true")
        lines.append("      }")
    lines.append("    }")
    return "\n".join(lines)


def _list(subjects: list[str]) -> str:
    inner = ",\n".join(f"          {json.dumps(s)}" for s in subjects)
    return f"[\n{inner}\n        ]"


def render_authorization(passwords: Mapping[str, str] | None = None) -> str:
    """The ``authorization`` block; literal ``passwords`` by user, or else the pods'
    ``$NATS_PASSWORD_<USER>`` environment variables (nats-server resolves them)."""

    def secret(user: str) -> str:
        return json.dumps(passwords[user]) if passwords else f"${password_variable(user)}"

    users = [_user_block(ADMIN_USER, secret(ADMIN_USER), None)]
    users += [_user_block(r.service, secret(r.service), permissions(r)) for r in ROLES]
    return "authorization {\n  users = [\n" + "\n".join(users) + "\n  ]\n}\n"


def kubernetes_file() -> str:
    header = (
        "# Generated from bai_platform.nats_permissions; do not edit by hand. Regenerate:\n"
        f"#   {REGENERATE}\n"
        "# Passwords come from the NATS pods' environment: NATS_PASSWORD_ADMIN and\n"
        "# NATS_PASSWORD_<SERVICE> (key nats-password of Secret <service>-secrets).\n"
    )
    return header + render_authorization()


if __name__ == "__main__":
    sys.stdout.write(kubernetes_file())
