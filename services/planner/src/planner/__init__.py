"""Planner: brands, campaigns, monthly content calendars, posts and approvals."""
