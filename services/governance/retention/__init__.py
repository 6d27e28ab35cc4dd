"""Retention policies per (data source, sensitivity), legal holds, and the purge job
(RETENTION.md beside this package)."""
