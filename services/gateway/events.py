"""Case events for live dashboards: a per-process bus fed by shared.changes.ChangeFeed, so
cases ingested over REST or GraphQL and changes by any mutation reach it once indexed: from
every API process on Postgres (LISTEN/NOTIFY), from this process on embedded SQLite (which
serves one process). A slow subscriber never slows a mutation: its queue is bounded and, when
full, it loses the oldest events and is told so by a `lagged` count on the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

import strawberry

from shared.db import utcnow

QUEUE_SIZE = 1000


@strawberry.enum
class CaseEventKind(Enum):
    INGESTED = "ingested"
    CHANGED = "changed"


_KINDS = {k.value: k for k in CaseEventKind}


@dataclass(frozen=True, slots=True)
class CaseEvent:
    kind: CaseEventKind
    case_id: str
    at: datetime


@dataclass(eq=False)  # hashed by identity: held in a set
class Subscription:
    queue: asyncio.Queue[CaseEvent] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )
    lagged: int = 0

    def offer(self, event: CaseEvent) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.lagged += 1
        self.queue.put_nowait(event)


class CaseEventBus:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def publish_changes(self, changes: dict[str, list[str]]) -> None:
        """A shared.db commit listener: whatever path committed the change."""
        for kind, ids in changes.items():
            if kind in _KINDS:
                self.publish(_KINDS[kind], ids)

    def publish(self, kind: CaseEventKind, case_ids: Iterable[str]) -> None:
        """Called only after the transaction that touched the cases has committed."""
        now = utcnow()
        events = [CaseEvent(kind, cid, now) for cid in case_ids]
        for sub in self._subscriptions:
            for event in events:
                sub.offer(event)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        sub = Subscription()
        self._subscriptions.add(sub)
        try:
            yield sub
        finally:
            self._subscriptions.discard(sub)
