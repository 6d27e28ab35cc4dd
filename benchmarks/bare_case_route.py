"""The floor `Query.case(id)` is compared with: a bare Starlette route that does the same
essential work (validate the same ES256 bearer token against the server's JWKS, read the same
case row with the raw driver, answer the same fields as JSON) and nothing else.

    python -m benchmarks.bare_case_route --jwks URL --issuer ISS --database URL --port P
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import uvicorn
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

QUERY = (
    "SELECT c.id, c.title, c.severity, c.status, m.name FROM failure_case c "
    "JOIN model m ON m.id = c.model_id WHERE c.id = {p}"
)


def build(jwks_url: str, issuer: str, database: str) -> Starlette:
    keys = KeySet.import_key_set(httpx.get(jwks_url).json())
    claims_rule = JWTClaimsRegistry(iss={"essential": True, "value": issuer})
    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if database.startswith("sqlite"):
            import aiosqlite

            state["db"] = await aiosqlite.connect(database.split("///", 1)[1])
            state["sql"] = QUERY.format(p="?")
        else:
            import asyncpg

            state["pool"] = await asyncpg.create_pool(
                database.replace("postgresql+asyncpg://", "postgresql://"), min_size=4, max_size=4
            )
            state["sql"] = QUERY.format(p="$1")
        yield

    async def case(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        try:
            token = jwt.decode(header.removeprefix("Bearer "), keys, algorithms=["ES256"])
            claims_rule.validate(token.claims)
        except (JoseError, ValueError):
            return JSONResponse({"error": "invalid token"}, status_code=401)
        if "db" in state:
            async with state["db"].execute(state["sql"], (request.path_params["id"],)) as cur:
                row = await cur.fetchone()
        else:
            row = await state["pool"].fetchrow(state["sql"], request.path_params["id"])
        if row is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        case_id, title, severity, status, model = tuple(row)
        body = {"id": case_id, "title": title, "severity": severity, "status": status}
        return Response(
            json.dumps({"data": {"case": {**body, "model": {"name": model}}}}),
            media_type="application/json",
        )

    return Starlette(routes=[Route("/case/{id}", case)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jwks", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = build(args.jwks, args.issuer, args.database)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
