"""Root fixtures: the session's local stack (see ``bai_platform.testing``)."""

pytest_plugins = ["bai_platform.testing"]
