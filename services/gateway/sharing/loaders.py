"""Per-request DataLoaders of the sharing service: a page of lessons asks once per group."""

from __future__ import annotations

from typing import Any

from strawberry.dataloader import DataLoader

from services.sharing import service


class SharingLoaders:
    def __init__(self, ctx: Any) -> None:
        async def visible_groups(ids: list[str]) -> list[bool]:
            seen = await service.visible_groups(await ctx.session(), list(ids), ctx.principal)
            return [i in seen for i in ids]

        self.visible_groups = DataLoader(load_fn=visible_groups)


def loaders(ctx: Any) -> SharingLoaders:
    """This request's loaders, made on first use (the context knows only the catalog's)."""
    found = ctx.__dict__.get("_sharing_loaders")
    if found is None:
        found = ctx.__dict__["_sharing_loaders"] = SharingLoaders(ctx)
    return found
