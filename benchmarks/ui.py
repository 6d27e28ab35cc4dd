"""Web page latency: the /ui pages of `failcat serve` (uvicorn, embedded backend) on a
realistic dataset, as a signed-in person's browser asks for them, each beside the raw SQL doing
the same work (so the ratio shows the page's own overhead: API, GraphQL, rendering).

    python -m benchmarks.ui [--cases 100000] [--rounds 100] [--data /tmp/failcat-bench-ui-100000]

1. --cases generated cases (benchmarks/generator.py: real incident write-ups as text,
   Zipf-distributed models, versions and failure modes, teams, severities) are ingested through
   the bulk route and indexed (untimed). The data dir (--data) is kept: a later run with the
   same --data and --cases serves it again instead of ingesting (delete it to rebuild);
2. a person (every team, restricted clearance: sees every case) signs in through /ui/signin:
   authorization code + PKCE with the pages' public client, the code exchanged by /ui/callback;
3. each page is requested `rounds` times, the kinds interleaved (so all see the same load):
     search        /ui/search (all cases: 9 facets, the monthly histogram, 20 hits)
     search_facet  /ui/search?f.severity=S2 (one facet selected)
     search_text   /ui/search?q=<a title word> with a severity and a model selected
     search_page2  the next page of the first, by its cursor
     case          /ui/cases/<random id> (facts, history, group, annotations)
     similar       /ui/cases/<random id>/similar (the fragment the case page's script fetches)
     dashboard     /ui/ (heatmap, 5 severity series, events, remediation, regressed groups)
     heatmap       /ui/?f.model=<the biggest model> (the dashboard of one model)
     heatmap_cell  the search a heatmap cell links to (one version, one failure mode)
     review        /ui/review (boards, agreement per field, the review queue)
     notebook      /ui/cases/<random id>/notebook.ipynb
     summary_md    /ui/cases/<random id>/summary.md
   beside each, "api": the same GraphQL request(s) the page makes, sent straight to /graphql
   (so page - api is the page's own cost: the in-process hop and the rendering), and "raw":
   the same aggregation as hand-written SQL on the same SQLite files (search.db for what the
   search backend counts, catalog.db for the rest), same rounds.
Prints p50/p95 of each, page/api and api/raw (target: page p95 <= 300 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson

from benchmarks.common import ROOT, served, token

sys.path.insert(0, str(ROOT))
from starlette.datastructures import QueryParams

from benchmarks.generator import CaseGenerator
from services.gateway.ui import api as ui_api
from services.gateway.ui import queries, signin
from services.gateway.ui.state import SearchState
from tests.auth.builders import CSRF_RE, query_of

BATCH = 2000
NEXT = re.compile(r'id="next-page" rel="next" href="([^"]+)"')
CELL = re.compile(r'<td class="cell[^"]*"><a href="([^"]+)"')
READY = "ids.json"  # written last: a data dir without it is rebuilt


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
    while time.monotonic() - start < 1800:
        answer = client.post("/graphql", json={"query": query, "variables": {"q": f"id:{ids[-1]}"}})
        if answer.json()["data"]["search"]["total"] == 1:
            return time.monotonic() - start
        time.sleep(0.5)
    raise RuntimeError("the indexer did not catch up")


def sign_in(base: str, admin: httpx.Client) -> httpx.Client:
    """A browser: its cookie jar ends up holding the pages' token cookie."""
    username, password = f"bench-reader-{secrets.token_hex(3)}", "bench-password-123"
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


# ---- the raw SQL beside each page ---------------------------------------------------------------

FACET_COLUMNS = (
    "model",
    "model_version",
    "data_source",
    "failure_mode",
    "severity",
    "status",
    "team",
    "sensitivity",
)
MONTH = "strftime('%Y-%m', occurred_at / 1000, 'unixepoch')"


def _raw_search(where: str = "1") -> list[str]:
    """Count, eight facets (the ninth, tags, is a join) and the monthly histogram."""
    return [
        f"SELECT count(*) FROM doc WHERE {where}",
        *(
            f"SELECT {c}, count(*) n FROM doc WHERE {where} GROUP BY {c} ORDER BY n DESC LIMIT 10"
            for c in FACET_COLUMNS
        ),
        f"SELECT {MONTH} k, count(*) FROM doc WHERE {where} GROUP BY k",
        f"SELECT id FROM doc WHERE {where} ORDER BY occurred_at DESC, id DESC LIMIT 21",
    ]


def _raw_dashboard(where: str = "1") -> list[str]:
    return [
        f"SELECT count(*) FROM doc WHERE {where}",
        f"SELECT model_version, failure_mode, count(*) FROM doc WHERE {where} "
        "GROUP BY model_version, failure_mode",
        f"SELECT severity, {MONTH} k, count(*) FROM doc WHERE {where} GROUP BY severity, k",
    ]


def _raw_case() -> list[str]:
    return [
        "SELECT * FROM failure_case WHERE id = :id",
        "SELECT * FROM case_revision WHERE case_id = :id ORDER BY revision",
        "SELECT g.* FROM failure_group g JOIN failure_case c ON c.group_id = g.id WHERE c.id = :id",
        "SELECT id, title FROM failure_case WHERE group_id = "
        "(SELECT group_id FROM failure_case WHERE id = :id) ORDER BY occurred_at DESC LIMIT 10",
        "SELECT * FROM case_link WHERE case_id = :id",
    ]


def _answer(browser: httpx.Client, token_: str, query: str, variables: dict | None = None) -> dict:
    resp = browser.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token_}"},
    )
    body = resp.json()
    # A viewer may not read the review queue: the page shows it as hidden, and so it is here.
    errors = [e for e in body.get("errors") or [] if e["extensions"]["code"] != "FORBIDDEN"]
    assert not errors, errors
    return body["data"]


def _id(url: str) -> dict[str, str]:
    return {"id": url.split("/")[3]}


def _state(url: str) -> SearchState:
    return SearchState.from_params(QueryParams(urlsplit(url).query))


def _search_api(url: str) -> list:
    return [(queries.SEARCH, ui_api._search_variables(_state(url)))]


def _dashboard_api(url: str) -> list:
    return [(queries.DASHBOARD, ui_api.dashboard_variables(_state(url)))]


class Raw:
    """The hand-written statements, on their own read connections to the served files."""

    def __init__(self, data_dir: Path) -> None:
        self.catalog = sqlite3.connect(f"file:{data_dir / 'catalog.db'}?mode=ro", uri=True)
        self.search = sqlite3.connect(f"file:{data_dir / 'search.db'}?mode=ro", uri=True)

    def run(self, db: str, statements: list[str], params: dict[str, str] | None = None) -> None:
        conn = self.catalog if db == "catalog" else self.search
        for stmt in statements:
            conn.execute(
                stmt, {k: v for k, v in (params or {}).items() if f":{k}" in stmt}
            ).fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--data", help="data dir kept between runs (default /tmp/failcat-bench-ui-N)"
    )
    args = parser.parse_args()

    data_dir = Path(args.data or f"/tmp/failcat-bench-ui-{args.cases}")
    env = {"FAILCAT_DATA_DIR": str(data_dir), "FAILCAT_LOG_LEVEL": "WARNING"}
    reuse = (data_dir / READY).exists()
    if not reuse:
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
    # A kept data dir may predate a migration of the code now measured.
    subprocess.run(
        [sys.executable, "-m", "services.gateway.cli", "db", "upgrade"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    with served(env) as base:
        headers = {"Authorization": f"Bearer {token(base, data_dir)}"}
        with httpx.Client(base_url=base, headers=headers, timeout=600) as admin:
            if reuse:
                ids = json.loads((data_dir / READY).read_text())
                # The server rebuilds an index built by another layout of the search fields.
                lag = wait_indexed(admin, ids)
                print(f"{len(ids)} cases served again from {data_dir} (indexed in {lag:.1f} s)")
            else:
                t0 = time.monotonic()
                ids = ingest(admin, args.cases)
                took = time.monotonic() - t0
                lag = wait_indexed(admin, ids)
                (data_dir / READY).write_text(json.dumps(ids))
                print(f"ingested {len(ids)} cases in {took:.1f} s; indexed {lag:.1f} s later")
            browser = sign_in(base, admin)
        raw = Raw(data_dir)
        top_model = raw.search.execute(
            "SELECT model FROM doc GROUP BY model ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()[0]
        rng = random.Random(1)
        first = browser.get("/ui/search")
        assert first.status_code == 200, first.text[:500]
        page2 = NEXT.search(first.text).group(1).replace("&amp;", "&")
        board = browser.get("/ui/")
        assert board.status_code == 200, board.text[:500]
        cell = CELL.search(board.text).group(1).replace("&amp;", "&")
        word = "system"
        text_where = (
            "pk IN (SELECT rowid FROM doc_fts WHERE doc_fts MATCH 'system') "
            "AND severity IN ('S1','S2') AND model = 'model-00'"
        )
        cell_state = SearchState.from_params(QueryParams(urlsplit(cell).query))
        cell_where = " AND ".join(
            f"{name} = '{values[0]}'" for name, values in cell_state.selections.items()
        )
        token_ = browser.cookies.get(signin.TOKEN_COOKIE)
        review = _answer(browser, token_, queries.REVIEW)
        fields = [
            f["name"]
            for f in review["annotationTaxonomy"]["fields"]
            if f["type"] in queries.AGREEMENT_TYPES and not f["subfields"]
        ][: queries.MAX_AGREEMENT_FIELDS]
        review_api = [(queries.REVIEW, {}), (queries.REVIEW_QUEUE, {})]
        if fields:
            review_api.append((queries.agreement_query("failcat", fields), {}))
        # name: (url, the API requests it makes, raw db, raw statements)
        case_id = lambda: rng.choice(ids)  # noqa: E731
        pages: dict[str, tuple[Callable[[], str], Callable[[str], list], str, list[str]]] = {
            "search": (lambda: "/ui/search", _search_api, "search", _raw_search()),
            "search_facet": (
                lambda: "/ui/search?f.severity=S2",
                _search_api,
                "search",
                _raw_search("severity = 'S2'"),
            ),
            "search_text": (
                lambda: f"/ui/search?q={word}&f.severity=S1&f.severity=S2&f.model=model-00",
                _search_api,
                "search",
                _raw_search(text_where),
            ),
            "search_page2": (lambda: page2, _search_api, "search", _raw_search()),
            "case": (
                lambda: f"/ui/cases/{case_id()}",
                lambda url: [(queries.CASE, _id(url)), (queries.ANNOTATIONS, _id(url))],
                "catalog",
                _raw_case(),
            ),
            "similar": (
                lambda: f"/ui/cases/{case_id()}/similar",
                lambda url: [(queries.SIMILAR, _id(url))],
                "search",
                [
                    # The case's title words, OR-ed and ranked by bm25 (the similar cases'
                    # query, without picking the words by tf x idf).
                    "SELECT d.id FROM doc_fts JOIN doc d ON d.pk = doc_fts.rowid "
                    "WHERE doc_fts MATCH :terms ORDER BY bm25(doc_fts) LIMIT 5"
                ],
            ),
            "dashboard": (lambda: "/ui/", _dashboard_api, "search", _raw_dashboard()),
            "heatmap": (
                lambda: f"/ui/?f.model={top_model}",
                _dashboard_api,
                "search",
                _raw_dashboard(f"model = '{top_model}'"),
            ),
            "heatmap_cell": (lambda: cell, _search_api, "search", _raw_search(cell_where)),
            "review": (
                lambda: "/ui/review",
                lambda url: review_api,
                "catalog",
                ["SELECT * FROM review_board", "SELECT count(*) FROM annotation"],
            ),
            "notebook": (
                lambda: f"/ui/cases/{case_id()}/notebook.ipynb",
                lambda url: [(queries.CASE_SEEN, _id(url))],
                "catalog",
                _raw_case()[:1],
            ),
            "summary_md": (
                lambda: f"/ui/cases/{case_id()}/summary.md",
                lambda url: [(queries.CASE, _id(url))],
                "catalog",
                _raw_case(),
            ),
        }
        titles = dict(
            raw.search.execute("SELECT d.id, t.title FROM doc d JOIN doc_text t USING (pk)")
        )
        timings: dict[str, dict[str, list[float]]] = {
            name: {"page": [], "api": [], "raw": []} for name in pages
        }
        for round_ in range(args.rounds + 5):
            for name, (url_of, api_of, db, statements) in pages.items():
                url = url_of()
                t = time.perf_counter()
                resp = browser.get(url)
                elapsed = {"page": time.perf_counter() - t}
                if resp.status_code == 303:
                    # The access token expired (a long run): the page sends the browser to
                    # /ui/refresh, which renews it; that request is timed again, not counted.
                    renewed = browser.get(resp.headers["location"])
                    assert renewed.status_code == 303, renewed.text[:300]
                    token_ = browser.cookies.get(signin.TOKEN_COOKIE)
                    t = time.perf_counter()
                    resp = browser.get(url)
                    elapsed = {"page": time.perf_counter() - t}
                assert resp.status_code == 200, (name, resp.status_code, resp.text[:300])
                t = time.perf_counter()
                for query, variables in api_of(url):
                    _answer(browser, token_, query, variables)
                elapsed["api"] = time.perf_counter() - t
                some = rng.choice(ids)
                words = re.findall(r"[^\W_]{3,}", titles.get(some) or "system")[:25]
                terms = " OR ".join(f'"{w}"' for w in words) or '"system"'
                t = time.perf_counter()
                raw.run(db, statements, {"id": some, "terms": terms})
                elapsed["raw"] = time.perf_counter() - t
                if round_ >= 5:  # warm-up rounds are not counted
                    for kind, value in elapsed.items():
                        timings[name][kind].append(value)
        browser.close()

    print(f"\n{len(ids)} cases, {args.rounds} requests per page (loaded machine: compare ratios)")
    print("page: the page over HTTP; api: the same GraphQL request(s) sent directly (the page's")
    print("own cost is page - api); raw: hand-written SQL doing the same aggregation")
    print(
        f"{'page':<14} {'p50 ms':>8} {'p95 ms':>8}  {'api p50':>8} {'api p95':>8}  "
        f"{'raw p50':>8} {'raw p95':>8}  {'page/api':>8} {'api/raw':>8}"
    )
    for name, kinds in timings.items():
        p, a, r = (statistics.quantiles(kinds[k], n=100) for k in ("page", "api", "raw"))
        print(
            f"{name:<14} {p[49] * 1000:8.1f} {p[94] * 1000:8.1f}  {a[49] * 1000:8.1f} "
            f"{a[94] * 1000:8.1f}  {r[49] * 1000:8.1f} {r[94] * 1000:8.1f}  "
            f"{p[49] / max(a[49], 1e-6):8.2f} {a[49] / max(r[49], 1e-6):8.1f}"
        )


if __name__ == "__main__":
    main()
