"""Gateway: identity, tokens, API keys, ForwardAuth decisions, webhooks in, live events out."""
