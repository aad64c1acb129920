"""``python -m bai_platform.devstack``: the same as ``bai-stack``."""

from bai_platform.devstack.cli import main

main()
