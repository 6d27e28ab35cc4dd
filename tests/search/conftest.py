"""Search fixtures: a backend of each kind, loaded once per session with corpus documents.

The OpenSearch backend needs FAILCAT_TEST_OPENSEARCH_URL (CI=true fails without it; elsewhere
it skips) and uses an index name unique to the session, deleted afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.search.backends.base import SearchBackend
from services.search.fields import SCHEMA, DocumentSchema
from tests.conftest import opensearch_url
from tests.search.corpus import corpus_documents, planted_documents
from tests.search.oracle import prepare

SEARCH_BACKENDS = ["embedded", "opensearch"]
NOW = datetime.now(UTC).replace(microsecond=0)


def backend_of(
    kind: str, tmp: Path, schema: DocumentSchema = SCHEMA, name: str | None = None
) -> SearchBackend:
    """A backend of `kind` over the index `name` (a file or an alias; new by default)."""
    name = name or f"failcat-t-search-{secrets.token_hex(4)}"
    if kind == "embedded":
        from services.search.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(tmp / f"{name}.db", schema)
    from services.search.backends.opensearch import OpenSearchBackend

    return OpenSearchBackend(opensearch_url(), name, schema=schema)


async def open_backend(kind: str, tmp: Path) -> SearchBackend:
    backend = backend_of(kind, tmp)
    await backend.ensure_ready()
    return backend


async def dispose_backend(backend: SearchBackend) -> None:
    await backend.drop()


@pytest.fixture(scope="session", params=SEARCH_BACKENDS)
def search_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def corpus() -> list[dict[str, Any]]:
    return corpus_documents() + planted_documents(NOW)


@pytest.fixture(scope="session")
def oracle_docs(corpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return prepare(corpus)


@pytest.fixture(scope="session")
async def loaded(
    search_kind: str, corpus: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SearchBackend]:
    """A backend holding the corpus: shared by tests that only read."""
    backend = await open_backend(search_kind, tmp_path_factory.mktemp("search"))
    try:
        await backend.index(corpus)
        await backend.refresh()
        yield backend
    finally:
        await dispose_backend(backend)


@pytest.fixture
async def fresh_backend(
    search_kind: str, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[SearchBackend]]]:
    """An empty backend of the same kind, for tests that write."""
    made: list[SearchBackend] = []

    async def make() -> SearchBackend:
        backend = await open_backend(search_kind, tmp_path)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await dispose_backend(backend)
