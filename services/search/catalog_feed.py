"""What the indexer reads from the catalog: outbox rows and search documents.

The catalog service owns these queries; this Protocol names the part of it search depends on,
so tests can hand the service a feed of their own.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession


class CatalogFeed(Protocol):
    async def outbox_batch(
        self, session: AsyncSession, limit: int
    ) -> list[tuple[int, str, int]]: ...

    async def outbox_ack(self, session: AsyncSession, ids: list[int]) -> None: ...

    async def search_documents(
        self, session: AsyncSession, case_ids: list[str]
    ) -> list[dict[str, Any]]: ...

    async def iter_search_documents(
        self, session: AsyncSession, after_id: str | None, limit: int
    ) -> list[dict[str, Any]]: ...

    async def case_revisions(self, session: AsyncSession) -> list[tuple[str, int]]: ...


def catalog_feed() -> CatalogFeed:
    """The catalog service module: it provides every function of the feed."""
    from services.catalog import service

    return service  # type: ignore[return-value]
