"""The search service: the only entry point other packages use to search or feed the index."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.annotation.search_state import BLINDED
from services.annotation.search_state import guard as blind_guard
from services.governance.redaction.service import mask_text
from services.search import suggestions as suggest
from services.search.backends.base import BackendUnavailable, SearchBackend
from services.search.catalog_feed import CatalogFeed, catalog_feed
from services.search.fields import SCHEMA, DocumentSchema
from services.search.query import parse
from services.search.request import (
    FilterBase,
    Hit,
    SearchAnswer,
    SearchRequest,
    Suggestion,
    Visibility,
    check_facets,
    check_first,
    check_heatmap,
    check_histogram,
    check_sort,
    decode_cursor,
    encode_cursor,
)
from shared.changes import record_change
from shared.db import Database
from shared.errors import BadUserInput, FieldError, Unavailable
from shared.security import Principal
from shared.settings import Settings

log = logging.getLogger("failcat.search")

MAX_BACKOFF_S = 10.0
# Similar cases a request may ask for (REST and FailureCase.similar).
MAX_SIMILAR = 50
# With nothing written, the indexer's poll slows from indexer_poll_s by doubling up to this.
# This process's own writes wake it at once (Database.on_outbox_commit); the poll is for the
# other processes' (a CLI job, another API worker, an API beside a `failcat worker`), which are
# indexed within this long of an idle spell. At 20 polls a second, an idle server spent most
# of its CPU asking an empty outbox.
IDLE_POLL_MAX_S = 1.0
# Woken, the indexer drains no sooner than this (at most indexer_poll_s) after its previous
# drain began: a burst of commits gathers into a few batches, not one drain per commit.
GATHER_S = 0.05

IndexHook = Callable[[Any, list[dict[str, Any]]], Awaitable[Any]]


@dataclass
class VerifyReport:
    catalog_count: int
    index_count: int
    catalog_checksum: str
    index_checksum: str
    missing: list[str] = field(default_factory=list)  # in the catalog, not in the index
    stale: list[str] = field(default_factory=list)  # indexed at an older revision
    extra: list[str] = field(default_factory=list)  # indexed, but no longer in the catalog
    ahead: list[str] = field(default_factory=list)  # indexed at a newer revision (restore?)
    repaired: int = 0

    @property
    def in_sync(self) -> bool:
        return self.catalog_checksum == self.index_checksum

    def as_json(self) -> dict[str, Any]:
        return {
            "in_sync": self.in_sync,
            "catalog_count": self.catalog_count,
            "index_count": self.index_count,
            "catalog_checksum": self.catalog_checksum,
            "index_checksum": self.index_checksum,
            "missing": len(self.missing),
            "stale": len(self.stale),
            "extra": len(self.extra),
            "ahead": len(self.ahead),
            "repaired": self.repaired,
        }


def search_entry(query: str | None, answer: SearchAnswer) -> dict[str, Any]:
    """The details of a `cases.search` audit entry (REST, GraphQL, the CLI): the query with PII
    masked as the default policy masks it (the trail must not keep what redaction removes
    from the cases), the total, and the page's ids."""
    return {
        "query": mask_text(query) if query else query,
        "hits": answer.total,
        "ids": [h.id for h in answer.hits],
    }


def revisions_checksum(pairs: dict[str, int]) -> str:
    """sha256 over the sorted "id:revision" lines: equal iff both sides hold the same set."""
    h = hashlib.sha256()
    for case_id in sorted(pairs):
        h.update(f"{case_id}:{pairs[case_id]}\n".encode())
    return h.hexdigest()


def make_backend(settings: Settings, schema: DocumentSchema = SCHEMA) -> SearchBackend:
    if settings.embedded_search:
        from services.search.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(settings.data_dir / "search.db", schema)
    from services.search.backends.opensearch import OpenSearchBackend

    return OpenSearchBackend(settings.search_url, settings.search_index, schema=schema)


class SearchService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        backend: SearchBackend,
        feed: CatalogFeed | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.backend = backend
        self.feed = feed or catalog_feed()
        self._ready = False
        self._index_hooks: list[IndexHook] = []

    def on_indexed(self, hook: IndexHook) -> None:
        """Call `hook(session, documents)` for each batch the indexer takes, in its
        transaction: what the hook writes commits with the batch (escalation rules queue
        their deliveries so). A hook that raises is rolled back to a savepoint and logged:
        it never stops indexing."""
        self._index_hooks.append(hook)

    @classmethod
    async def start(
        cls, settings: Settings, db: Database, *, feed: CatalogFeed | None = None
    ) -> SearchService:
        service = cls(settings, db, make_backend(settings), feed)
        try:
            await service._ensure_ready()
        except BackendUnavailable as exc:
            # Ingestion must keep working while the index is down: start anyway, /readyz
            # reports it, and the indexer sets the index up when it returns.
            log.warning("search backend not ready at start: %s", exc)
        return service

    async def _ensure_ready(self) -> None:
        if not self._ready:
            await self.backend.ensure_ready()
            self._ready = True

    async def close(self) -> None:
        await self.backend.close()

    async def ping(self) -> bool:
        return self._ready and await self.backend.ping()

    # ---- the indexer --------------------------------------------------------------------

    async def _drain_batch(self) -> int:
        """Index one outbox batch; the rows are deleted only after the index took the batch
        (same transaction), so a failure leaves them for the next try: at least once.

        The outbox is the catalog's change log, so the same transaction also announces the
        batch's cases to live subscribers (shared.changes): off the ingestion path, and from
        whichever process drains it."""
        await self._ensure_ready()
        async with self.db.transaction() as session:
            rows = await self.feed.outbox_batch(session, self.settings.indexer_batch)
            if not rows:
                return 0
            case_ids = list(dict.fromkeys(r[1] for r in rows))
            docs = await self.feed.search_documents(session, case_ids)
            found = {d["id"] for d in docs}
            await self.backend.index(docs)
            await self.backend.delete([i for i in case_ids if i not in found])
            await self.feed.outbox_ack(session, [r[0] for r in rows])
            live = [(cid, rev) for _, cid, rev in rows if cid in found]
            await record_change(session, "ingested", [c for c, rev in live if rev == 1])
            await record_change(session, "changed", [c for c, rev in live if rev > 1])
            for hook in self._index_hooks:
                try:
                    async with session.begin_nested():
                        await hook(session, docs)
                except Exception:
                    log.exception("indexer: hook %r failed on a batch", hook)
        return len(rows)

    async def upgrade_index(self) -> bool:
        """Rebuild the index from the catalog if it was made for another field table (a
        field was added or changed since): True if it did. The indexer calls this first,
        so an upgrade needs no manual step; searches use the old index until the switch."""
        await self._ensure_ready()
        if not await self.backend.outdated():
            return False
        log.warning("search index was built for another field table: rebuilding it")
        await self.reindex()
        return True

    async def drain_outbox(self) -> int:
        """Index everything waiting in the outbox; returns the outbox rows consumed."""
        await self.upgrade_index()
        total = 0
        while n := await self._drain_batch():
            total += n
        return total

    async def run_indexer(self) -> None:
        """Drain the outbox forever; back off while the backend (or database) is down."""
        written = asyncio.Event()
        forget = self.db.on_outbox_commit(written.set)
        try:
            await self._index_forever(written)
        finally:
            forget()

    async def _index_forever(self, written: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        poll = self.settings.indexer_poll_s
        idle_poll = poll
        backoff = 0.0
        while True:
            started = loop.time()
            try:
                await self.upgrade_index()
                n = await self._drain_batch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, BackendUnavailable):
                    self._ready = False  # re-check the template and alias when it returns
                backoff = min(MAX_BACKOFF_S, backoff * 2 or poll * 4)
                level = logging.WARNING if isinstance(exc, BackendUnavailable) else logging.ERROR
                log.log(
                    level,
                    "indexer: %s; retrying in %.1fs",
                    exc,
                    backoff,
                    exc_info=not isinstance(exc, BackendUnavailable),
                )
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            if n >= self.settings.indexer_batch:
                continue
            if n:
                idle_poll = poll
            if await _set_within(written, idle_poll):
                idle_poll = poll
                await asyncio.sleep(started + min(poll, GATHER_S) - loop.time())
            else:
                idle_poll = min(idle_poll * 2, max(poll, IDLE_POLL_MAX_S))

    # ---- searching ----------------------------------------------------------------------

    def build_request(
        self,
        principal: Principal,
        query: str,
        *,
        filter: FilterBase | None = None,
        facets: list[str] | tuple[str, ...] = (),
        first: int = 20,
        after: str | None = None,
        sort: str = "relevance",
        histogram: str | None = None,
        heatmap: tuple[str, str] | list[str] | None = None,
        now: datetime | None = None,
    ) -> SearchRequest:
        """Validate and parse once; the request then compiles for either backend."""
        schema = self.backend.schema
        sort = check_sort(sort, schema)
        request = SearchRequest(
            visibility=Visibility.of(principal),
            query=parse(query or "", now, schema),
            selections=filter.selections() if filter else {},
            facets=check_facets(list(facets), schema),
            first=check_first(first),
            after=decode_cursor(after, sort, schema) if after else None,
            sort=sort,
            histogram=check_histogram(histogram),
            heatmap=check_heatmap(heatmap, schema),
        )
        # The blind-read rule reaches search through its own fields (annotation's to say).
        return blind_guard(principal, request) if BLINDED in schema.by_name else request

    async def search(
        self,
        principal: Principal,
        query: str,
        *,
        filter: FilterBase | None = None,
        facets: list[str] | tuple[str, ...] = (),
        first: int = 20,
        after: str | None = None,
        sort: str = "relevance",
        histogram: str | None = None,
        heatmap: tuple[str, str] | list[str] | None = None,
    ) -> SearchAnswer:
        request = self.build_request(
            principal,
            query,
            filter=filter,
            facets=facets,
            first=first,
            after=after,
            sort=sort,
            histogram=histogram,
            heatmap=heatmap,
        )
        return await self.execute(request)

    async def execute(self, request: SearchRequest) -> SearchAnswer:
        try:
            await self._ensure_ready()
            result = await self.backend.search(request)
            cursor = None
            if result.has_more and result.hits:
                cursor = encode_cursor(request.sort, result.hits[-1].sort_values)
            found: list[Suggestion] = []
            if result.total == 0:
                found = await self._suggestions(request)
        except BackendUnavailable as exc:
            raise Unavailable("search is temporarily unavailable") from exc
        return SearchAnswer(
            **{f.name: getattr(result, f.name) for f in dataclasses.fields(result)},
            next_cursor=cursor,
            suggestions=found,
        )

    async def _suggestions(self, request: SearchRequest) -> list[Suggestion]:
        """For an empty answer: the closest visible values of each keyword value asked for
        that no visible case has (services/search/suggestions.py)."""
        missing = []
        for name, value, condition in suggest.asked(request, self.backend.schema):
            probe = await self.backend.search(suggest.probe_request(request, condition))
            if probe.total == 0:
                missing.append((name, value))
        if not missing:
            return []
        pool = await self.backend.search(suggest.pool_request(request, [n for n, _ in missing]))
        return suggest.suggestions(missing, pool.facets)

    async def similar(self, principal: Principal, case_id: str, first: int = 10) -> list[Hit]:
        if not 1 <= first <= MAX_SIMILAR:  # REST and GraphQL alike
            raise BadUserInput(
                f"first must be between 1 and {MAX_SIMILAR}",
                [FieldError("first", f"between 1 and {MAX_SIMILAR}")],
            )
        try:
            await self._ensure_ready()
            return await self.backend.similar(Visibility.of(principal), case_id, check_first(first))
        except BackendUnavailable as exc:
            raise Unavailable("search is temporarily unavailable") from exc

    # ---- operations ---------------------------------------------------------------------

    async def _catalog_revisions(self) -> dict[str, int]:
        async with self.db.transaction() as session:
            return dict(await self.feed.case_revisions(session))

    async def _catalog_batches(self, size: int) -> AsyncIterator[list[dict[str, Any]]]:
        after: str | None = None
        while True:
            async with self.db.transaction() as session:
                docs = await self.feed.iter_search_documents(session, after, size)
            if not docs:
                return
            yield docs
            after = docs[-1]["id"]

    async def reindex(
        self, progress: Callable[[int, int | None], None] | None = None
    ) -> VerifyReport:
        """Build a new index from the catalog, switch to it atomically, then repair what
        changed while it was being built (those writes went to the old index)."""
        await self._ensure_ready()
        expected = len(await self._catalog_revisions())

        def report(done: int, _: int | None) -> None:
            if progress:
                progress(done, expected)

        await self.backend.rebuild(self._catalog_batches(self.settings.indexer_batch), report)
        return await self.verify(repair=True)

    async def verify(self, repair: bool = False) -> VerifyReport:
        """Compare count and a checksum of (id, revision) between catalog and index."""
        await self._ensure_ready()
        catalog = await self._catalog_revisions()
        index = await self.backend.revisions()
        rep = VerifyReport(
            catalog_count=len(catalog),
            index_count=len(index),
            catalog_checksum=revisions_checksum(catalog),
            index_checksum=revisions_checksum(index),
        )
        for case_id, rev in catalog.items():
            have = index.get(case_id)
            if have is None:
                rep.missing.append(case_id)
            elif have < rev:
                rep.stale.append(case_id)
            elif have > rev:
                rep.ahead.append(case_id)
        rep.extra = [i for i in index if i not in catalog]
        if repair and not rep.in_sync:
            # A newer revision in the index would refuse the catalog's: remove it first.
            await self.backend.delete(rep.extra + rep.ahead)
            todo = rep.missing + rep.stale + rep.ahead
            for i in range(0, len(todo), self.settings.indexer_batch):
                async with self.db.transaction() as session:
                    docs = await self.feed.search_documents(
                        session, todo[i : i + self.settings.indexer_batch]
                    )
                await self.backend.index(docs)
                rep.repaired += len(docs)
            rep.repaired += len(rep.extra)
        return rep


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether `event` is set within `seconds` (or was already: it stays set until taken
    here, so a commit made while a drain ran is not missed)."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
        return True
    except TimeoutError:
        return False
    finally:
        event.clear()
