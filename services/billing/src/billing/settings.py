from pydantic import BaseModel, Field, SecretStr

from bai_platform.settings import ServiceSettings


class PlanSettings(BaseModel):
    """One plan of the catalogue: what a month buys, and its Stripe price."""

    name: str
    # Credits granted for each paid month, per kind (posts, extraction_pages, chat_messages).
    monthly_credits: dict[str, int]
    seats: int = Field(ge=1)
    # The Stripe Price (recurring, monthly) a Checkout session sells for this plan.
    stripe_price_id: str


def _catalogue() -> dict[str, PlanSettings]:
    return {
        "starter": PlanSettings(
            name="Starter",
            monthly_credits={"posts": 120, "extraction_pages": 1_000, "chat_messages": 2_000},
            seats=2,
            stripe_price_id="price_bai_starter_monthly",
        ),
        "growth": PlanSettings(
            name="Growth",
            monthly_credits={"posts": 500, "extraction_pages": 10_000, "chat_messages": 20_000},
            seats=5,
            stripe_price_id="price_bai_growth_monthly",
        ),
        "agency": PlanSettings(
            name="Agency",
            monthly_credits={"posts": 2_000, "extraction_pages": 50_000, "chat_messages": 100_000},
            seats=20,
            stripe_price_id="price_bai_agency_monthly",
        ),
    }


class BillingSettings(ServiceSettings):
    service_name: str = "billing"
    port: int = 8105
    # Credits every new workspace starts with, so that a fresh installation can generate,
    # extract and chat before any subscription (0 turns a kind off). They never expire.
    starter_grant: dict[str, int] = Field(
        default_factory=lambda: {"posts": 100, "extraction_pages": 500, "chat_messages": 200}
    )
    # The plan catalogue; BAI_PLANS='{"growth": {...}}' replaces it (price ids per deployment).
    plans: dict[str, PlanSettings] = Field(default_factory=_catalogue)
    # A paid month's credits stay usable this long past the end of the period they were paid
    # for (Stripe retries a renewal for days); then what is left of them expires.
    grant_grace_hours: float = Field(default=72.0, ge=0)
    # Stripe's secret API key (sk_live_/sk_test_/rk_); empty: checkout and portal answer 503.
    stripe_api_key: SecretStr = SecretStr("")
    # Where the stripe library sends API calls; only tests and stand-ins change it.
    stripe_api_base: str = "https://api.stripe.com"
    stripe_timeout_seconds: float = Field(default=20.0, gt=0)
    # Webhook signing secrets (whsec_...). Several while a secret is rolled: an event signed
    # by any of them is accepted. Empty: every webhook is refused (nothing verifies).
    stripe_webhook_secrets: list[SecretStr] = Field(default_factory=list)
    # Seconds of clock difference a signed webhook may have (Stripe's default, 300).
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    # Where Checkout and the customer portal send people back ({base} = public_base_url).
    checkout_success_url: str = "{base}/billing?checkout=success"
    checkout_cancel_url: str = "{base}/billing?checkout=cancelled"
    portal_return_url: str = "{base}/billing"
    # How often the worker looks for stored Stripe events to process and grants to expire.
    job_poll_seconds: float = Field(default=1.0, gt=0)
    # Attempts at one stored event whose handler fails before it waits for the replay
    # command; and how long an event that cannot be applied yet (its workspace or invoice
    # not known yet) keeps waiting for what it needs: as long as Stripe retries, 3 days.
    event_max_attempts: int = Field(default=8, ge=1)
    event_wait_seconds: float = Field(default=3 * 24 * 3600, ge=0)
