"""The gateway's Loader keeps primed values in a plain dict, not as settled futures: it must
still answer as strawberry's DataLoader does (services/gateway/catalog/loaders.py)."""

from __future__ import annotations

import asyncio

from services.gateway.catalog.loaders import Loader


def _loader() -> tuple[Loader, list[list[str]]]:
    batches: list[list[str]] = []

    async def load(keys: list[str]) -> list[str]:
        batches.append(list(keys))
        return [f"loaded {k}" for k in keys]

    return Loader(load_fn=load), batches


async def test_a_primed_value_is_read_without_a_future_or_a_load() -> None:
    loader, batches = _loader()
    loader.prime("a", "primed a")
    assert loader.get("a") == "primed a"
    assert loader.cache_map.get("a") is None  # no future made for it
    assert loader.known("a") and not loader.known("b")
    assert await loader.load("a") == "primed a"  # awaiting it still works
    assert await loader.load_many(["a"]) == ["primed a"]
    assert batches == []


async def test_priming_does_not_replace_a_loaded_value_unless_forced() -> None:
    loader, batches = _loader()
    assert await loader.load("a") == "loaded a"
    loader.prime("a", "primed a")
    assert loader.get("a") == "loaded a"
    loader.prime("a", "forced a", force=True)
    assert loader.get("a") == "forced a"
    assert await loader.load("a") == "forced a"
    loader.prime("b", "first b")
    loader.prime("b", "second b")
    assert loader.get("b") == "first b"
    assert batches == [["a"]]


async def test_clearing_a_primed_key_loads_it_again() -> None:
    loader, batches = _loader()
    loader.prime_many({"a": "primed a", "b": "primed b"})
    loader.clear("a")
    pending = loader.get("a")  # not known any more: the awaitable of a load
    assert await pending == "loaded a"
    loader.clear_all()
    assert not loader.known("b")
    assert await loader.load("b") == "loaded b"
    assert batches == [["a"], ["b"]]


async def test_priming_a_key_whose_load_is_pending_settles_that_load() -> None:
    loader, batches = _loader()
    pending = loader.load("a")
    loaded = loader.load("b")
    loader.prime("a", "primed a")  # before the batch is dispatched
    assert await asyncio.gather(pending, loaded) == ["primed a", "loaded b"]
    assert batches == [["b"]]
