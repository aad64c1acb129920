"""Mining: extraction jobs, sources, results, exports."""
