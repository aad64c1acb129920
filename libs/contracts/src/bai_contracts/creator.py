"""Facts creator publishes about generated content."""

from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from bai_contracts._base import EventContract
from bai_contracts.callbacks import WorkflowReport


class GeneratedContent(BaseModel):
    """One version of a post's content, as an engine wrote it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    title: str | None = None
    text: str
    hashtags: list[str] = []
    call_to_action: str | None = None
    image_prompt: str | None = None
    alt_text: str | None = None


class GenerationResult(WorkflowReport):
    """An n8n workflow's callback for a ``gen_`` job: ``completed`` with ``content``, or
    ``failed`` with an ``error``. Creator checks ``content`` against ``GeneratedContent``
    and the channel's rules, and says on the job what was wrong."""

    content: object = None


class ContentGenerationStarted(EventContract):
    """Creator took a generation request and made a job for it."""

    subject: ClassVar[str] = "bai.creator.content.generation_started.v1"

    request_id: UUID
    post_id: UUID
    job_id: str


class ContentGenerated(EventContract):
    """A generation request was answered with content."""

    subject: ClassVar[str] = "bai.creator.content.generated.v1"

    request_id: UUID
    post_id: UUID
    job_id: str
    version: int
    content: GeneratedContent


class ContentFailed(EventContract):
    """A generation request ended without content; ``error`` is readable by the tenant."""

    subject: ClassVar[str] = "bai.creator.content.failed.v1"

    request_id: UUID
    post_id: UUID
    job_id: str
    error: str


class ContentVersionChosen(EventContract):
    """Someone chose an earlier version of a post's content to be its draft again."""

    subject: ClassVar[str] = "bai.creator.content.version_chosen.v1"

    post_id: UUID
    version: int
    content: GeneratedContent
    chosen_by: str
