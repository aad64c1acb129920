"""``python -m gateway api|worker|migrate|dead-letters|replay|rotate-signing-key``."""

from pathlib import Path

from bai_platform.runtime import service_cli
from gateway.app import create_app
from gateway.commands import rotate_signing_key
from gateway.settings import GatewaySettings
from gateway.worker import worker_spec

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

if __name__ == "__main__":
    service_cli(
        settings_factory=GatewaySettings,
        app_factory=create_app,
        worker_factory=worker_spec,
        migrations=MIGRATIONS,
        commands=[rotate_signing_key],
    )()
