"""Creator: generation jobs, engines (n8n, built-in), chat replies."""
