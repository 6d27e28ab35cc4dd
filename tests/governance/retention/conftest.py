"""Retention fixtures: a catalog and index of the module's own (no other indexer drains its
outbox, no other test's policy applies to its runs), on each backend pair."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from services.search.service import SearchService
from shared.db import Database
from shared.migrate import upgrade_async
from tests.conftest import make_settings


@dataclass
class Stack:
    db: Database
    search: SearchService

    async def settle(self) -> None:
        """What the indexer does in production: take the outbox into the index."""
        await self.search.drain_outbox()
        await self.search.backend.refresh()


@pytest.fixture(scope="module")
async def stack(backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    settings = await make_settings(backend, tmp_path_factory.mktemp("retention"))
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    search = await SearchService.start(settings, db)
    try:
        yield Stack(db, search)
    finally:
        await search.backend.drop()
        await search.close()
        await db.dispose()
