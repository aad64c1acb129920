"""Messages exchanged between B.A.I. services, defined in one place.

Every event is a past-tense fact on the subject ``bai.<service>.<entity>.<fact>.v<n>``.
Contracts only gain optional fields; a breaking change is a new ``.v2`` subject.
"""

from bai_contracts._base import EventContract, stream_for_subject
from bai_contracts.billing import (
    CREDIT_KINDS,
    BalanceQuery,
    BillingNotice,
    CommitCredits,
    CreditsThresholdReached,
    QuotaAnswer,
    ReleaseCredits,
    ReserveCredits,
    SubscriptionChanged,
    quota_subject,
)
from bai_contracts.callbacks import (
    CallbackDelivery,
    CallbackOutcome,
    CallbackReceived,
    CallbackVerdict,
    WorkflowReport,
    WorkflowText,
    callback_delivery_subject,
    callback_subject,
)
from bai_contracts.chat import (
    CHAT_PATH_PREFIX,
    VISITOR_AUDIENCE,
    VISITOR_CREDENTIAL,
    VISITOR_ROLE,
    VISITOR_SCOPE,
    VISITOR_TOKEN_TYPE,
    WIDGET_LOOKUP_SUBJECT,
    ChatReplied,
    WidgetFound,
    WidgetLookup,
    visitor_subject,
)
from bai_contracts.creator import (
    ContentFailed,
    ContentGenerated,
    ContentGenerationStarted,
    ContentVersionChosen,
    GeneratedContent,
    GenerationResult,
)
from bai_contracts.gateway import TenantCreated
from bai_contracts.mining import ExtractionProgressed
from bai_contracts.planner import (
    BrandVoice,
    CampaignCreated,
    MonthScheduled,
    PostGenerationRequested,
    PostStateChanged,
    PublishResult,
    ReviewLinkExpiring,
)
from bai_contracts.streams import DEAD_LETTER_STREAM, STREAMS, StreamSpec

__all__ = [
    "CHAT_PATH_PREFIX",
    "CREDIT_KINDS",
    "DEAD_LETTER_STREAM",
    "STREAMS",
    "VISITOR_AUDIENCE",
    "VISITOR_CREDENTIAL",
    "VISITOR_ROLE",
    "VISITOR_SCOPE",
    "VISITOR_TOKEN_TYPE",
    "WIDGET_LOOKUP_SUBJECT",
    "BalanceQuery",
    "BillingNotice",
    "BrandVoice",
    "CallbackDelivery",
    "CallbackOutcome",
    "CallbackReceived",
    "CallbackVerdict",
    "CampaignCreated",
    "ChatReplied",
    "CommitCredits",
    "ContentFailed",
    "ContentGenerated",
    "ContentGenerationStarted",
    "ContentVersionChosen",
    "CreditsThresholdReached",
    "EventContract",
    "ExtractionProgressed",
    "GeneratedContent",
    "GenerationResult",
    "MonthScheduled",
    "PostGenerationRequested",
    "PostStateChanged",
    "PublishResult",
    "QuotaAnswer",
    "ReleaseCredits",
    "ReserveCredits",
    "ReviewLinkExpiring",
    "StreamSpec",
    "SubscriptionChanged",
    "TenantCreated",
    "WidgetFound",
    "WidgetLookup",
    "WorkflowReport",
    "WorkflowText",
    "callback_delivery_subject",
    "callback_subject",
    "quota_subject",
    "stream_for_subject",
    "visitor_subject",
]
