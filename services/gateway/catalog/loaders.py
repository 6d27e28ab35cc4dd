"""Per-request DataLoaders: each relation of a page of cases costs one query, not one per case.

A page (Query.cases, FailureGroup.cases, search hits) loads the relations its query selects up
front, one query each (`prefetch_case_relations`); the relation fields then read the loaders'
cache synchronously (`Loader.get`), so completing a page creates no awaitable per case and field.
A field reached any other way (one case, a mutation's result) still batches through the loader.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode
from strawberry.dataloader import DataLoader

from services.catalog import service

if TYPE_CHECKING:
    from strawberry.types import Info

    from services.gateway.context import Context


_MISSING: Any = object()


class Loader(DataLoader):
    """A DataLoader whose primed values wait in a plain dict. strawberry's `prime` makes a
    settled future per key; a page of search hits primes five loaders for each of its cases
    (~100 futures), which the relation fields then read synchronously (`get`) without ever
    awaiting one. A future is made only when `load` asks for a primed key. It relies on
    strawberry's `prime_many` settling a pending batch without calling `prime` (pinned
    version; tests/gateway/test_loaders.py fails, by recursion or a needless load, if not)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._primed: dict[Any, Any] = {}

    def prime(self, key: Any, value: Any, force: bool = False) -> None:
        if self.batch is not None and not self.batch.dispatched:
            super().prime_many({key: value}, force)  # settles a pending load of the key too
        elif force:
            if self.cache_map.get(key) is not None:
                self.cache_map.delete(key)
            self._primed[key] = value
        elif not self.known(key):
            self._primed[key] = value

    def known(self, key: Any) -> bool:
        """Whether the key is primed or its load has begun (or ended)."""
        return key in self._primed or self.cache_map.get(key) is not None

    def prime_many(self, data: Any, force: bool = False) -> None:
        for key, value in data.items():
            self.prime(key, value, force)

    def load(self, key: Any) -> Any:
        if self._primed:
            value = self._primed.pop(key, _MISSING)
            if value is not _MISSING:
                super().prime_many({key: value}, force=True)
        return super().load(key)

    def get(self, key: Any) -> Any:
        """The value when already loaded (or primed), else the awaitable `load` returns."""
        value = self._primed.get(key, _MISSING)
        if value is not _MISSING:
            return value
        future = self.cache_map.get(key)
        if future is not None and future.done() and not future.cancelled():
            return future.result()  # raises the batch's error, as awaiting would
        return self.load(key)

    def clear(self, key: Any) -> None:
        was_primed = self._primed.pop(key, _MISSING) is not _MISSING
        if not was_primed or self.cache_map.get(key) is not None:
            super().clear(key)  # strawberry's KeyError for a key it never held, as before

    def clear_many(self, keys: Iterable[Any]) -> None:
        for key in keys:
            self.clear(key)

    def clear_all(self) -> None:
        self._primed.clear()
        super().clear_all()


def _by_id(
    fetch: Callable[[Any, list[str]], Awaitable[Sequence[Any]]], ctx: Context, key: str = "id"
) -> Loader:
    async def load(ids: list[str]) -> list[Any]:
        rows = {getattr(r, key): r for r in await fetch(await ctx.session(), list(ids))}
        return [rows.get(i) for i in ids]

    return Loader(load_fn=load)


def _many(
    fetch: Callable[[Any, list[str]], Awaitable[Sequence[Any]]], ctx: Context, key: str = "case_id"
) -> Loader:
    async def load(ids: list[str]) -> list[list[Any]]:
        grouped: dict[str, list[Any]] = defaultdict(list)
        for r in await fetch(await ctx.session(), list(ids)):
            grouped[getattr(r, key)].append(r)
        return [grouped.get(i, []) for i in ids]

    return Loader(load_fn=load)


def _windowed(
    fetch: Callable[[Any, list[str], timedelta], Awaitable[dict[str, Any]]],
    ctx: Context,
    empty: Callable[[], Any] | None = None,
) -> Loader:
    """A loader of (id, window hours) keys: one fetch per distinct window in the batch;
    `empty` makes the value of an id the fetch did not answer."""

    async def load(keys: list[tuple[str, int]]) -> list[Any]:
        by_window: dict[int, list[str]] = defaultdict(list)
        for key_id, hours in keys:
            by_window[hours].append(key_id)
        found: dict[tuple[str, int], Any] = {}
        session = await ctx.session()
        for hours, ids in by_window.items():
            got = await fetch(session, list(dict.fromkeys(ids)), timedelta(hours=hours))
            found.update({(i, hours): v for i, v in got.items()})
        return [found.get(k, empty() if empty is not None else None) for k in keys]

    return Loader(load_fn=load)


class CatalogLoaders:
    """The request's loaders, each built on first use: a request reads a few of them (a
    case(id) only the model's), and building all of them was a cost of every request."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    @cached_property
    def model(self) -> Loader:
        return _by_id(service.models_by_id, self._ctx)

    @cached_property
    def model_version(self) -> Loader:
        return _by_id(service.model_versions_by_id, self._ctx)

    @cached_property
    def data_source(self) -> Loader:
        return _by_id(service.data_sources_by_id, self._ctx)

    @cached_property
    def group(self) -> Loader:
        return _by_id(service.groups_by_id, self._ctx)

    @cached_property
    def hidden_cases(self) -> Loader:
        """Per group id, how many of its cases the caller may not see (0 when none)."""
        ctx = self._ctx

        async def counts(ids: list[str]) -> list[int]:
            hidden = await service.hidden_case_counts(await ctx.session(), ids, ctx.principal)
            return [hidden.get(i, 0) for i in ids]

        return Loader(load_fn=counts)

    @cached_property
    def links(self) -> Loader:
        return _many(service.links_of, self._ctx)

    @cached_property
    def revisions(self) -> Loader:
        return _many(service.revisions_of, self._ctx)

    @cached_property
    def last_revision(self) -> Loader:
        return _by_id(service.last_revisions_of, self._ctx, key="case_id")

    @cached_property
    def versions_of_model(self) -> Loader:
        return _many(service.versions_of_models, self._ctx, key="model_id")

    @cached_property
    def case(self) -> Loader:
        """Visibility applies here too: a hit the caller may not see loads as null."""
        ctx = self._ctx

        async def cases(ids: list[str]) -> list[Any]:
            rows = {
                c.id: c
                for c in await service.get_cases(await ctx.session(), list(ids), ctx.principal)
            }
            return [rows.get(i) for i in ids]

        return Loader(load_fn=cases)

    # Keyed (id, window hours): one query set per window the request asks for.
    @cached_property
    def context_events(self) -> Loader:
        return _windowed(service.preceding_events, self._ctx, empty=list)

    @cached_property
    def started_after(self) -> Loader:
        ctx = self._ctx
        return _windowed(
            lambda session, ids, window: service.started_after(session, ids, ctx.principal, window),
            ctx,
        )


# FailureCase's relation fields: the loader each reads, and the row attribute it is keyed by.
CASE_RELATIONS: dict[str, tuple[str, str]] = {
    "model": ("model", "model_id"),
    "modelVersion": ("model_version", "model_version_id"),
    "dataSource": ("data_source", "data_source_id"),
    "group": ("group", "group_id"),
    "links": ("links", "id"),
    "revisions": ("revisions", "id"),
    "lastRevision": ("last_revision", "id"),
}


def selected_under(info: Info, *paths: tuple[str, ...]) -> set[str]:
    """Names of the fields the query selects at any of `paths` below the current field
    (fragments expanded; @skip/@include ignored, so at worst a relation loads unused).

    Walks graphql-core's nodes, each fragment once: `info.selected_fields` would build objects
    for the whole subtree and expand a fragment again at every spread."""
    raw = info._raw_info
    fragments = raw.fragments
    names: set[str] = set()
    for path in paths:
        level: list[SelectionSetNode] = [
            n.selection_set for n in raw.field_nodes if n.selection_set
        ]
        for step in path:
            level = [
                f.selection_set
                for f in _fields(level, fragments)
                if f.name.value == step and f.selection_set is not None
            ]
        names.update(f.name.value for f in _fields(level, fragments))
    return names


def _fields(sets: Iterable[SelectionSetNode], fragments: dict[str, Any]) -> Iterable[FieldNode]:
    seen: set[str] = set()
    stack = list(sets)
    while stack:
        for sel in stack.pop().selections:
            if isinstance(sel, FieldNode):
                yield sel
            elif isinstance(sel, InlineFragmentNode):
                stack.append(sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                seen.add(sel.name.value)
                fragment = fragments.get(sel.name.value)
                if fragment is not None:
                    stack.append(fragment.selection_set)


async def prefetch_case_relations(
    info: Info, cases: Collection[Any], *paths: tuple[str, ...]
) -> None:
    """Load, one query per relation, the relations of `cases` the query selects at `paths`."""
    if not cases:
        return
    loaders: CatalogLoaders = info.context.loaders
    wanted = {CASE_RELATIONS[n] for n in selected_under(info, *paths) if n in CASE_RELATIONS}
    for loader_name, attr in sorted(wanted):
        loader = getattr(loaders, loader_name)
        # Only what priming left: a known key needs no load (nor a future) of its own.
        keys = [k for k in {getattr(c, attr) for c in cases} - {None} if not loader.known(k)]
        if keys:
            await loader.load_many(keys)
