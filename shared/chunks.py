"""Long value lists cut into statement-sized pieces (SQL `IN` lists, bulk requests).

SQLite binds at most 32766 variables per statement; IN lists stay well below that.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
IN_CHUNK = 5000


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
