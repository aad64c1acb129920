"""``python -m creator api|worker|migrate|dead-letters|replay``."""

from pathlib import Path

from bai_platform.runtime import service_cli
from creator.app import create_app
from creator.settings import CreatorSettings
from creator.worker import worker_spec

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

if __name__ == "__main__":
    service_cli(
        settings_factory=CreatorSettings,
        app_factory=create_app,
        worker_factory=worker_spec,
        migrations=MIGRATIONS,
    )()
