"""``python -m billing api|worker|migrate|dead-letters|replay|replay-stripe-events``."""

from billing.cli import cli

if __name__ == "__main__":
    cli()()
