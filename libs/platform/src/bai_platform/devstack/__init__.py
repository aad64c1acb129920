"""The local stack: PostgreSQL, NATS JetStream, Traefik and every service as processes.

One supervisor serves ``make run`` (``bai-stack up``) and the test session (``Stack``
from a pytest fixture), so what the tests exercise is what a newcomer runs.
"""

from bai_platform.devstack.config import SERVICES, StackSettings
from bai_platform.devstack.stack import ComponentFailed, PortInUse, Stack

__all__ = ["SERVICES", "ComponentFailed", "PortInUse", "Stack", "StackSettings"]
