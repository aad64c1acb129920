"""Planner business logic, one module per sub-domain. Functions flush, never commit:
the request (or the consumer's inbox transaction) commits at the edge."""
