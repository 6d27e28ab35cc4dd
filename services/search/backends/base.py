"""The one interface both search backends implement; the conformance suite tests it on both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from services.search.fields import DocumentSchema
from services.search.request import Hit, SearchRequest, SearchResult, Visibility

# Called with (documents done, documents expected or None) while a rebuild runs.
Progress = Callable[[int, int | None], None]


class BackendUnavailable(Exception):
    """The engine cannot be reached or refuses work for now: retry later, lose nothing."""


class SearchBackend(Protocol):
    name: str
    # The field table this backend's index is built for (mapping or tables derive from it).
    schema: DocumentSchema

    async def ensure_ready(self) -> None:
        """Create what the index needs (template, alias, tables); idempotent."""

    async def outdated(self) -> bool:
        """True while the live index was built for another field table (an upgrade added or
        changed a field): it must be rebuilt from the catalog (`rebuild`), after which this
        is False. Searches keep answering meanwhile, from what the old index can."""

    async def close(self) -> None: ...

    async def drop(self) -> None:
        """Delete everything this backend stored (index, template or file) and close it:
        tests and benchmarks clean up with it."""

    async def ping(self) -> bool: ...

    async def index(self, docs: list[dict[str, Any]]) -> int:
        """Write documents; a document whose revision is not newer than the stored one is
        skipped (external versioning), so replays and out-of-order batches are harmless.
        Returns how many were written. Raises BackendUnavailable when it should be retried."""

    async def delete(self, ids: list[str]) -> None:
        """Remove documents of cases the catalog no longer has; missing ids are fine."""

    async def search(self, request: SearchRequest) -> SearchResult:
        """One page: hits carry their raw `sort_values` (the service turns the last into a
        cursor) and `has_more` says whether another page follows. `request.after` has the
        shape of the sort's keys (request.decode_cursor checked it)."""

    async def similar(self, visibility: Visibility, case_id: str, first: int) -> list[Hit]:
        """Cases whose text resembles `case_id`'s; nothing when the caller cannot see it."""

    async def revisions(self) -> dict[str, int]:
        """Every indexed (id, revision): what `verify` compares with the catalog."""

    async def rebuild(
        self, batches: AsyncIterator[list[dict[str, Any]]], progress: Progress | None = None
    ) -> int:
        """Build a fresh index from `batches` while searches keep using the old one, then
        switch to it atomically. Returns the number of documents written."""

    async def refresh(self) -> None:
        """Make every write so far searchable now (tests and benchmarks only)."""
