"""Auth test helpers on top of the shared fixtures (tests/conftest.py).

`resource` is a minimal resource server wired exactly as the gateway's routes are
(AuthService.authenticate + shared.web.require), so 401/403 answers are tested without
depending on which catalog routes exist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from shared.security import Principal, Scope
from shared.web import install_error_handlers, require


@pytest.fixture(scope="session")
async def resource(app: Any, settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    probe = FastAPI()
    install_error_handlers(probe)
    probe.state.auth = app.state.auth

    @probe.get("/cases")
    async def read_cases(p: Principal = Depends(require(Scope.CASES_READ))) -> dict:
        return {"sub": p.subject, "team": p.team, "clearance": p.clearance.value}

    @probe.post("/cases")
    async def write_cases(p: Principal = Depends(require(Scope.CASES_WRITE))) -> dict:
        return {"ok": True}

    transport = httpx.ASGITransport(app=probe)
    async with httpx.AsyncClient(transport=transport, base_url="http://resource") as c:
        yield c


@pytest.fixture(autouse=True)
def _fresh_rate_limits(app: Any, bootstrap: Any) -> None:
    # Every test starts with clean failure counters (all share 127.0.0.1).
    app.state.auth.limiter.reset()
    app.state.auth.ip_limiter.reset()
