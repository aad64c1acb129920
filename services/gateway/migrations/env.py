"""Alembic environment for gateway: version table in the gateway schema."""

from bai_platform.migrations import run_env
from gateway.models import Base

run_env(Base.metadata)
