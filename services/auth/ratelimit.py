"""Slows down guessing at the token, introspection, revocation and login endpoints.

Only failures count (bad client credentials, bad codes, bad passwords), so a busy client that
succeeds is never throttled. A client's failures count per address (services/auth/api.py
`_limit_keys`), so instances elsewhere still holding a rotated secret do not lock out the ones
that have the new secret; a person's failed passwords count per username.

The counters live in the process: with N API processes an attacker gets N times the budget,
which still turns online guessing of a 256-bit secret or an argon2-hashed password into a
non-starter; a shared store would add a dependency for little.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable


class FailureLimiter:
    """Sliding-window count of failures per key; a key over its budget waits for the window."""

    def __init__(
        self,
        max_failures: int = 10,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _prune(self, key: str, now: float) -> deque[float] | None:
        q = self._failures.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q

    def retry_after(self, keys: Iterable[str]) -> int:
        """Seconds until every key is under budget again; 0 when the request may proceed."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            q = self._prune(key, now)
            if q is not None and len(q) >= self.max_failures:
                wait = max(wait, q[len(q) - self.max_failures] + self.window_s - now)
        return math.ceil(wait) if wait > 0 else 0

    def record_failure(self, keys: Iterable[str]) -> None:
        now = self._clock()
        if len(self._failures) >= self._max_keys:
            # Bounded memory under a spray of distinct keys: forget the stalest half.
            for key in list(self._failures)[: self._max_keys // 2]:
                del self._failures[key]
        for key in keys:
            q = self._failures.setdefault(key, deque())
            q.append(now)
            # Keep no more than the budget needs to compute Retry-After.
            while len(q) > self.max_failures:
                q.popleft()

    def reset(self) -> None:
        self._failures.clear()
