"""Per-request DataLoaders: each relation of a page of cases costs one query, not one per case."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from strawberry.dataloader import DataLoader

from services.catalog import service

if TYPE_CHECKING:
    from services.gateway.context import Context


def _by_id(
    fetch: Callable[[Any, list[str]], Awaitable[Sequence[Any]]], ctx: Context, key: str = "id"
) -> DataLoader[str, Any]:
    async def load(ids: list[str]) -> list[Any]:
        rows = {getattr(r, key): r for r in await fetch(await ctx.session(), list(ids))}
        return [rows.get(i) for i in ids]

    return DataLoader(load_fn=load)


def _many(
    fetch: Callable[[Any, list[str]], Awaitable[Sequence[Any]]], ctx: Context, key: str = "case_id"
) -> DataLoader[str, list[Any]]:
    async def load(ids: list[str]) -> list[list[Any]]:
        grouped: dict[str, list[Any]] = defaultdict(list)
        for r in await fetch(await ctx.session(), list(ids)):
            grouped[getattr(r, key)].append(r)
        return [grouped.get(i, []) for i in ids]

    return DataLoader(load_fn=load)


class CatalogLoaders:
    def __init__(self, ctx: Context) -> None:
        self.model = _by_id(service.models_by_id, ctx)
        self.model_version = _by_id(service.model_versions_by_id, ctx)
        self.data_source = _by_id(service.data_sources_by_id, ctx)
        self.group = _by_id(service.groups_by_id, ctx)
        self.links = _many(service.links_of, ctx)
        self.revisions = _many(service.revisions_of, ctx)
        self.versions_of_model = _many(service.versions_of_models, ctx, key="model_id")

        async def cases(ids: list[str]) -> list[Any]:
            rows = {
                c.id: c
                for c in await service.get_cases(await ctx.session(), list(ids), ctx.principal)
            }
            return [rows.get(i) for i in ids]

        # Visibility applies here too: a hit the caller may not see loads as null.
        self.case = DataLoader(load_fn=cases)
