"""Creator business logic: campaign briefs and generation jobs, credits, channels, the
engines that write posts, and the website chat. Flush, never commit."""
