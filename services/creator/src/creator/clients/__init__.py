"""Creator's calls out to other systems: OpenAI-compatible chat completions."""
