"""``python -m billing api|worker|migrate|dead-letters|replay|replay-stripe-events``."""

from pathlib import Path

import typer

from bai_platform.runtime import service_cli
from billing.app import create_app
from billing.commands import replay_stripe_events
from billing.settings import BillingSettings
from billing.worker import worker_spec

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def cli() -> typer.Typer:
    return service_cli(
        settings_factory=BillingSettings,
        app_factory=create_app,
        worker_factory=worker_spec,
        migrations=MIGRATIONS,
        commands=[replay_stripe_events],
    )
