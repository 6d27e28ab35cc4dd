"""Running `failcat` in-process against a test session's database and index."""

from __future__ import annotations

import asyncio
from typing import Any

from services.gateway.cli import main


def _point_at(monkeypatch: Any, settings: Any) -> None:
    """The CLI reads its settings from the environment: the test session's ones."""
    monkeypatch.setenv("FAILCAT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("FAILCAT_DATABASE_URL", settings.catalog_url)
    monkeypatch.setenv("FAILCAT_SEARCH_URL", settings.search_url)
    monkeypatch.setenv("FAILCAT_SEARCH_INDEX", settings.search_index)


def _failcat(monkeypatch: Any, settings: Any, capsys: Any, *argv: str) -> tuple[int, str, str]:
    _point_at(monkeypatch, settings)
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def failcat(monkeypatch: Any, settings: Any, capsys: Any, *argv: str) -> tuple[int, str, str]:
    # The CLI runs its own event loop (asyncio.run); keep it off the test's loop.
    return await asyncio.to_thread(_failcat, monkeypatch, settings, capsys, *argv)


async def indexed(search: Any, query: str, expected: int) -> int:
    """Wait until the index answers `expected` hits (the in-process indexer may hold a batch
    that drain_outbox skipped)."""
    from shared.security import SYSTEM

    total = -1
    for _ in range(200):
        await search.drain_outbox()
        await search.backend.refresh()
        total = (await search.search(SYSTEM, query, first=1)).total
        if total >= expected:
            break
        await asyncio.sleep(0.1)
    return total


def _run_captured(settings: Any, *argv: str) -> tuple[int, str, str]:
    import contextlib
    import io

    import pytest

    out, err = io.StringIO(), io.StringIO()
    with (
        pytest.MonkeyPatch.context() as mp,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        _point_at(mp, settings)
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


async def run_cli(settings: Any, *argv: str) -> tuple[int, str, str]:
    """`failcat *argv` against `settings`' database and index, for fixtures wider than a test
    (no capsys): standard output and error captured."""
    return await asyncio.to_thread(_run_captured, settings, *argv)
