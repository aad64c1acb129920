"""Alembic environment for gateway: version table in the gateway schema."""

from bai_platform.migrations import run_env
from gateway.models import GatewayTable

run_env(GatewayTable.metadata)
