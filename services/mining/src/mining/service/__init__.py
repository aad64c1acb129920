"""Mining business logic: extraction jobs and their runner, the crawler and extraction,
leads, the n8n workflow and its pages, schedules and exports."""
