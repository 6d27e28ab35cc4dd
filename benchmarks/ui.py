"""Web page latency: the /ui pages of `failcat serve` (uvicorn, embedded backend by default) on
a realistic dataset, as a signed-in person's browser asks for them.

    python -m benchmarks.ui [--cases 20000] [--rounds 200]

1. --cases generated cases (benchmarks/generator.py: real incident write-ups as text,
   Zipf-distributed models, versions and failure modes, teams, severities) are ingested through
   the bulk route and indexed (untimed);
2. a person (every team, restricted clearance: sees every case) signs in through /ui/signin:
   authorization code + PKCE with the pages' public client, the code exchanged by /ui/callback;
3. each page is requested `rounds` times, the kinds interleaved (so all see the same load):
     search       /ui/search (all cases: 9 facets, the monthly histogram, 20 hits)
     search_text  /ui/search?q=<a title word> with a severity and a model selected
     search_page2 the next page of the first, by its cursor
     case         /ui/cases/<random id> (facts, history, group)
     similar      /ui/cases/<random id>/similar (the fragment the case page's script fetches)
     dashboard    /ui/ (heatmap, 5 severity series, regressed groups: one API request)
     summary_md   /ui/cases/<random id>/summary.md
Prints p50/p95/p99 per page (target: p95 <= 300 ms).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from urllib.parse import urlsplit

import httpx
import orjson

from benchmarks.common import ROOT, migrated_env, served, token

sys.path.insert(0, str(ROOT))
from benchmarks.generator import CaseGenerator
from tests.auth.builders import CSRF_RE, query_of

BATCH = 2000
NEXT = re.compile(r'id="next-page" rel="next" href="([^"]+)"')


def ingest(client: httpx.Client, n: int) -> list[str]:
    gen = CaseGenerator(seed=7)
    ids: list[str] = []
    for start in range(0, n, BATCH):
        batch = [gen.case() for _ in range(min(BATCH, n - start))]
        resp = client.post(
            "/catalog/v1/cases:bulk",
            content=orjson.dumps(batch),
            headers={"Content-Type": "application/json"},
        )
        resp.raise_for_status()
        ids += [r["id"] for r in resp.json()["results"] if r.get("id")]
    return ids


def wait_indexed(client: httpx.Client, ids: list[str]) -> float:
    """Until the last case ingested is searchable (the outbox is indexed in order); past
    10,000 a search's total is only a lower bound, so it cannot be counted instead."""
    start = time.monotonic()
    query = "query($q: String!) { search(query: $q, first: 1) { total } }"
    while time.monotonic() - start < 900:
        answer = client.post("/graphql", json={"query": query, "variables": {"q": f"id:{ids[-1]}"}})
        if answer.json()["data"]["search"]["total"] == 1:
            return time.monotonic() - start
        time.sleep(0.5)
    raise RuntimeError("the indexer did not catch up")


def sign_in(base: str, admin: httpx.Client) -> httpx.Client:
    """A browser: its cookie jar ends up holding the pages' token cookie."""
    username, password = "bench-reader", "bench-password-123"
    created = admin.post(
        "/graphql",
        json={
            "query": "mutation($u: UserInput!) { createUser(user: $u) { id } }",
            "variables": {
                "u": {
                    "username": username,
                    "password": password,
                    "roles": ["viewer"],
                    "clearance": "RESTRICTED",
                }
            },
        },
    ).json()
    assert "errors" not in created, created
    browser = httpx.Client(base_url=base, timeout=60)
    start = browser.get("/ui/signin")
    params = query_of(start.headers["location"])
    page = browser.get("/oauth/authorize", params=params)
    form = {
        **params,
        "csrf_token": CSRF_RE.search(page.text).group(1),
        "username": username,
        "password": password,
        "decision": "allow",
    }
    back = browser.post("/oauth/authorize", data=form)
    # The redirect names the configured issuer; the callback is this server's either way.
    location = urlsplit(back.headers["location"])
    done = browser.get(f"{location.path}?{location.query}")
    assert done.status_code == 303, done.text
    return browser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    env, data_dir = migrated_env("failcat-bench-ui-")
    with served(env) as base:
        headers = {"Authorization": f"Bearer {token(base, data_dir)}"}
        with httpx.Client(base_url=base, headers=headers, timeout=600) as admin:
            t0 = time.monotonic()
            ids = ingest(admin, args.cases)
            took = time.monotonic() - t0
            lag = wait_indexed(admin, ids)
            print(f"ingested {len(ids)} cases in {took:.1f} s; indexed {lag:.1f} s later")
            browser = sign_in(base, admin)
        rng = random.Random(1)
        first = browser.get("/ui/search")
        assert first.status_code == 200, first.text[:500]
        page2 = NEXT.search(first.text).group(1).replace("&amp;", "&")
        word = "system"
        pages = {
            "search": lambda: "/ui/search",
            "search_text": lambda: (
                f"/ui/search?q={word}&f.severity=S1&f.severity=S2&f.model=model-00"
            ),
            "search_page2": lambda: page2,
            "case": lambda: f"/ui/cases/{rng.choice(ids)}",
            "similar": lambda: f"/ui/cases/{rng.choice(ids)}/similar",
            "dashboard": lambda: "/ui/",
            "summary_md": lambda: f"/ui/cases/{rng.choice(ids)}/summary.md",
        }
        timings: dict[str, list[float]] = {name: [] for name in pages}
        for round_ in range(args.rounds + 10):
            for name, url in pages.items():
                t = time.perf_counter()
                resp = browser.get(url())
                elapsed = time.perf_counter() - t
                assert resp.status_code == 200, (name, resp.status_code, resp.text[:300])
                if round_ >= 10:  # warm-up rounds are not counted
                    timings[name].append(elapsed)
        browser.close()

    print(f"{'page':<14} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}   ({args.rounds} requests each)")
    for name, values in timings.items():
        q = statistics.quantiles(values, n=100)
        print(f"{name:<14} {q[49] * 1000:8.1f} {q[94] * 1000:8.1f} {q[98] * 1000:8.1f}")


if __name__ == "__main__":
    main()
