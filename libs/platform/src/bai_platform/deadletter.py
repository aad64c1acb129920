"""Dead letters: messages a consumer gave up on, kept for an operator to read and replay.

They live in the ``DEADLETTER`` stream on ``bai.dlq.<service>.<consumer>`` with the
original subject, the reason and the original body. ``replay`` publishes the body again
on the original subject; the consumer's inbox never recorded the failed event, so the
replay is applied once.
"""

from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from bai_contracts import DEAD_LETTER_STREAM
from bai_platform.messaging import ensure_streams

ORIGINAL_SUBJECT = "Bai-Original-Subject"
REASON = "Bai-Dead-Letter-Reason"
CONSUMER = "Bai-Consumer"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    sequence: int
    subject: str
    consumer: str
    original_subject: str
    reason: str
    data: bytes


async def dead_letter(
    js: JetStreamContext, message: Msg, *, service: str, consumer: str, reason: str
) -> None:
    headers = {
        ORIGINAL_SUBJECT: message.subject,
        REASON: reason[:1000].replace("\r", " ").replace("\n", " "),
        CONSUMER: consumer,
    }
    await js.publish(f"bai.dlq.{service}.{consumer}", message.data, headers=headers)


async def list_dead_letters(
    js: JetStreamContext, *, service: str, limit: int = 50
) -> list[DeadLetter]:
    """The oldest dead letters of one service, up to ``limit``."""
    await ensure_streams(js, [DEAD_LETTER_STREAM])
    info = await js.stream_info(DEAD_LETTER_STREAM.name)
    letters: list[DeadLetter] = []
    sequence = info.state.first_seq
    while sequence and sequence <= info.state.last_seq and len(letters) < limit:
        letter = await _get(js, sequence)
        if letter and letter.subject.startswith(f"bai.dlq.{service}."):
            letters.append(letter)
        sequence += 1
    return letters


async def _get(js: JetStreamContext, sequence: int) -> DeadLetter | None:
    try:
        raw = await js.get_msg(DEAD_LETTER_STREAM.name, seq=sequence)
    except NotFoundError:
        return None
    headers = raw.headers or {}
    return DeadLetter(
        sequence=sequence,
        subject=raw.subject or "",
        consumer=headers.get(CONSUMER, ""),
        original_subject=headers.get(ORIGINAL_SUBJECT, ""),
        reason=headers.get(REASON, ""),
        data=raw.data or b"",
    )


async def replay(js: JetStreamContext, *, sequence: int) -> DeadLetter:
    """Publish a dead letter again on its original subject and remove it from the stream."""
    letter = await _get(js, sequence)
    if letter is None:
        raise LookupError(f"no dead letter at sequence {sequence}")
    await js.publish(
        letter.original_subject, letter.data, headers={"Nats-Msg-Id": f"replay-{sequence}"}
    )
    await js.delete_msg(DEAD_LETTER_STREAM.name, sequence)
    return letter
