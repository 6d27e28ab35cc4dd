"""When to retry and how long to wait: exponential backoff with full jitter, floored by the
server's Retry-After."""

from __future__ import annotations

import email.utils
import random
import time
from typing import Optional

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# A Retry-After longer than this is treated as this: a producer should probe again sooner
# than a misconfigured proxy asks.
MAX_RETRY_AFTER_S = 300.0


def backoff_delay(
    attempt: int, base_s: float, cap_s: float, retry_after_s: Optional[float] = None
) -> float:
    """Delay before retry number `attempt` (1 = first retry): uniform in [0, min(cap, base *
    2**(attempt-1))] (full jitter spreads a fleet of producers recovering together), but never
    sooner than the server asked."""
    ceiling = min(cap_s, base_s * (2 ** max(0, attempt - 1)))
    delay = random.uniform(0, ceiling)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
