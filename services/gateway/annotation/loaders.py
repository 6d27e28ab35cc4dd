"""Per-request DataLoaders of the annotation service: a page of cases reading its annotations
or review trails costs one batch, not one query per case."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from strawberry.dataloader import DataLoader

from services.annotation import boards, service
from services.gateway.catalog.loaders import Loader


class AnnotationLoaders:
    def __init__(self, ctx: Any) -> None:
        async def annotations(keys: list[tuple[str, str | None]]) -> list[Any]:
            # Keyed (case id, taxonomy or None); the blind-read rule answers per key.
            session = await ctx.session()
            by_taxonomy: dict[str | None, list[str]] = defaultdict(list)
            for case_id, taxonomy in keys:
                by_taxonomy[taxonomy].append(case_id)
            found: dict[tuple[str, str | None], Any] = {}
            for taxonomy, case_ids in by_taxonomy.items():
                result = await service.annotations_for(session, case_ids, ctx.principal, taxonomy)
                found.update({(cid, taxonomy): v for cid, v in result.items()})
            return [found[k] for k in keys]

        async def trails(case_ids: list[str]) -> list[Any]:
            result = await service.review_trails(await ctx.session(), case_ids, ctx.principal)
            return [result[c] for c in case_ids]

        async def history(annotation_ids: list[str]) -> list[Any]:
            grouped: dict[str, list[Any]] = defaultdict(list)
            for change in await service.history_of(await ctx.session(), list(annotation_ids)):
                grouped[change.annotation_id].append(change)
            return [grouped.get(i, []) for i in annotation_ids]

        async def names(subjects: list[str]) -> list[str | None]:
            found = await service.annotator_names(await ctx.session(), subjects)
            return [found.get(s) for s in subjects]

        async def curated_hidden(case_ids: list[str]) -> list[bool]:
            hidden = await service.curated_blinded(await ctx.session(), case_ids, ctx.principal)
            return [c in hidden for c in case_ids]

        async def sessions(board_ids: list[str]) -> list[Any]:
            found = await boards.sessions_of(await ctx.session(), list(board_ids))
            return [found[b] for b in board_ids]

        async def agendas(session_ids: list[str]) -> list[Any]:
            found = await boards.agendas(await ctx.session(), list(session_ids), ctx.principal)
            return [found[s] for s in session_ids]

        self.sessions = DataLoader(load_fn=sessions)
        self.agendas = DataLoader(load_fn=agendas)
        self.annotations = DataLoader(load_fn=annotations)
        # Read synchronously by the curated fields when primed (a search's hits): Loader.get.
        self.curated_hidden = Loader(load_fn=curated_hidden)
        self.trails = DataLoader(load_fn=trails)
        self.history = DataLoader(load_fn=history)
        self.names = DataLoader(load_fn=names)


def loaders(ctx: Any) -> AnnotationLoaders:
    """This request's loaders, made on first use (the context knows only the catalog's)."""
    found = ctx.__dict__.get("_annotation_loaders")
    if found is None:
        found = ctx.__dict__["_annotation_loaders"] = AnnotationLoaders(ctx)
    return found
