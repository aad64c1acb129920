"""Gateway business logic: accounts, workspaces, credentials and signing keys, the
ForwardAuth decision, rate limits, n8n callbacks in and live events out. Flush, never
commit."""
