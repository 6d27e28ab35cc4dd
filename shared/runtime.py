"""Process-level tuning applied by the long-running entry points (serve, worker)."""

from __future__ import annotations

import gc

from shared.logging import configure_logging

# A bulk request parses thousands of dicts that survive a few young collections, which then
# trigger full collections walking the whole heap: with the default thresholds that cost
# about a seventh of ingestion time. Fewer, larger young collections keep the cycle
# collector (still on) off the hot path.
GC_THRESHOLDS = (100_000, 50, 100)


def prepare_process(log_level: str = "INFO") -> None:
    """What every long-running process sets up first: JSON logs (with the request's
    correlation id) on stderr, and the collector's thresholds."""
    configure_logging(log_level)
    gc.set_threshold(*GC_THRESHOLDS)
