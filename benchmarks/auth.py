"""Auth figures: per-request token validation vs a bare signature check, and issuance rate.

    .venv/bin/python -m benchmarks.auth [--n 20000] [--issue 500]

Runs the real app on embedded SQLite in a temporary data dir.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from joserfc import jws

from services.auth.keys import ALG
from shared.migrate import upgrade_async
from shared.settings import Settings


def _per_call_us(fn, n: int, rounds: int = 5) -> float:
    """Median over rounds of the mean per call, in microseconds."""
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        results.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(results)


async def main(n: int, issue: int, concurrency: int) -> None:
    from services.gateway.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), run_indexer_in_process=False)
        await upgrade_async(settings.catalog_url)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            auth = app.state.auth
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as http:
                async with app.state.db.transaction() as s:
                    rec, secret = await auth.create_client(
                        s, name="bench", scopes=["cases:read", "cases:write"]
                    )
                creds = (rec.client_id, secret)
                data = {"grant_type": "client_credentials"}
                token = (await http.post("/oauth/token", data=data, auth=creds)).json()[
                    "access_token"
                ]

                header = f"Bearer {token}"
                key = auth.ring().verify_keys[auth.ring().signing_kid]
                auth.authenticate(header)  # warm
                full = _per_call_us(lambda: auth.authenticate(header), n)
                bare = _per_call_us(lambda: jws.deserialize_compact(token, key, [ALG]), n)

                for _ in range(20):  # warm the pool and the code paths
                    await http.post("/oauth/token", data=data, auth=creds)

                async def one() -> None:
                    r = await http.post("/oauth/token", data=data, auth=creds)
                    assert r.status_code == 200, r.text

                start = time.perf_counter()
                sem = asyncio.Semaphore(concurrency)

                async def bounded() -> None:
                    async with sem:
                        await one()

                await asyncio.gather(*(bounded() for _ in range(issue)))
                elapsed = time.perf_counter() - start

    print(f"token validation, AuthService.authenticate (warm JWKS): {full:7.1f} us/request")
    print(f"bare ES256 signature check, joserfc jws:              {bare:7.1f} us/request")
    print(f"validation overhead beyond the signature:              {full - bare:7.1f} us")
    print(
        f"client_credentials issuance via ASGI (SQLite, {concurrency} in flight): "
        f"{issue / elapsed:7.0f} tokens/s ({elapsed / issue * 1e3:.2f} ms each)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000, help="validations per round")
    parser.add_argument("--issue", type=int, default=500, help="tokens to issue")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.issue, args.concurrency))
