"""Per-request DataLoaders of the safeguards' relations (a list of runs costs one query per
relation, not one per run). Kept on the request's context beside the catalog's loaders."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from strawberry.types import Info

from services.gateway.catalog.loaders import Loader
from services.safeguards import service

_ATTR = "safeguards_loaders"


class SafeguardsLoaders:
    def __init__(self, ctx: Any) -> None:
        async def suites(version_ids: list[str]) -> list[Any]:
            found = await service.snapshots_by_version_id(await ctx.session(), version_ids)
            by_id = {s.frozen.id: s for s in found}
            return [by_id.get(i) for i in version_ids]

        async def proposals(run_ids: list[str]) -> list[list[Any]]:
            grouped: dict[str, list[Any]] = defaultdict(list)
            for p in await service.proposals_of_runs(await ctx.session(), run_ids):
                grouped[p.run_id].append(p)
            return [grouped.get(i, []) for i in run_ids]

        async def of_cases(case_ids: list[str]) -> list[list[Any]]:
            found = await service.suites_containing(await ctx.session(), case_ids)
            return [found.get(i, []) for i in case_ids]

        self.suite_version = Loader(load_fn=suites)
        self.case_suites = Loader(load_fn=of_cases)
        self.proposals = Loader(load_fn=proposals)


def loaders(info: Info) -> SafeguardsLoaders:
    """Created on first use in a request, like the context's own loaders."""
    ctx = info.context
    found = ctx.__dict__.get(_ATTR)
    if found is None:
        found = ctx.__dict__[_ATTR] = SafeguardsLoaders(ctx)
    return found
