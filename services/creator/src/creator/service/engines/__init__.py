"""Engines that write a post's content: built in, n8n workflows, OpenAI-compatible APIs."""
