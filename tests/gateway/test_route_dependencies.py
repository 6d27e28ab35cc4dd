"""Every route's endpoint and every dependency it resolves is a coroutine (or an async
generator).

FastAPI runs a plain `def` endpoint or dependency in its threadpool: a thread hand-off per
call per request. The scope check and the caller's token, resolved by nearly every route, were
plain functions and cost a case read ~15% of its CPU that way (py-spy). They do no I/O, so
they are `async def`; this keeps a new one from slipping back into the threadpool unnoticed.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from services.gateway.app import create_app
from shared.settings import Settings


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """The app's APIRoutes, through the routers it includes (FastAPI keeps an included
    router as one entry holding the original, `original_router`)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _runs_on_the_loop(call: Any) -> bool:
    if not inspect.isfunction(call):
        call = call.__call__  # a callable instance: FastAPI awaits it if this is async
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)


def test_no_endpoint_or_dependency_runs_in_the_threadpool(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    routes = list(_api_routes(app.routes))
    assert len(routes) > 20  # the catalog's, the search's, the auth server's...
    checked = 0
    offenders = set()
    for route in routes:
        for call in (route.endpoint, *_calls(route.dependant)):
            checked += 1
            if not _runs_on_the_loop(call):
                offenders.add(f"{route.path}: {getattr(call, '__qualname__', call)}")
    assert checked > len(routes)  # nearly every route resolves its caller and a session
    assert not offenders, sorted(offenders)
