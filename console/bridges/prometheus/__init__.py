"""Prometheus metrics served by the supervisor (`metrics.listen`, docs/metrics.md)."""
