"""/healthz (process alive) and /readyz (catalog database and search backend reachable)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _database_ok(request: Request) -> bool:
    try:
        async with asyncio.timeout(2):
            async with request.app.state.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


async def _search_ok(request: Request) -> bool:
    search = getattr(request.app.state, "search", None)
    if search is None:
        return True
    try:
        async with asyncio.timeout(2):
            return bool(await search.ping())
    except Exception:
        return False


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    db_ok, search_ok = await asyncio.gather(_database_ok(request), _search_ok(request))
    checks = {
        "catalog_database": "ok" if db_ok else "down",
        "search_backend": "ok" if search_ok else "down",
    }
    down = [k for k, v in checks.items() if v == "down"]
    if down:
        return JSONResponse(
            {"status": "unavailable", "down": down, "checks": checks}, status_code=503
        )
    return JSONResponse({"status": "ready", "checks": checks})
