from pydantic import Field

from bai_platform.settings import ServiceSettings


class BillingSettings(ServiceSettings):
    service_name: str = "billing"
    port: int = 8105
    # Credits every new workspace starts with, so that a fresh installation can generate,
    # extract and chat before any subscription (0 turns a kind off).
    starter_grant: dict[str, int] = Field(
        default_factory=lambda: {"posts": 100, "extraction_pages": 500, "chat_messages": 200}
    )
