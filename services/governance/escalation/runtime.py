"""Wiring escalation into a process: the indexer hook and the background sender."""

from __future__ import annotations

from typing import Any

from services.governance.escalation import service
from services.governance.escalation.delivery import DeliveryPolicy, Dispatcher
from shared.db import Database


def attach(
    db: Database,
    search: Any,
    policy: DeliveryPolicy | None = None,
    *,
    allow_private: bool = True,
) -> Dispatcher:
    """Judge rules on every batch `search` indexes; the sender to run beside its indexer."""
    search.on_indexed(service.on_indexed)
    return Dispatcher(db, search, policy, allow_private=allow_private)
