"""Every search example documented in README.md and services/search/QUERY.md, sent through
REST (`GET /search/v1/cases`) and GraphQL (`Query.search`) on both backends: the two answer the
same (hits in the same order, total, facets, histogram, heatmap, cursor), and a documented error
is the same error on both, with the documented message.

The examples are read from the markdown, so an example added to either file is tested too:
- QUERY.md: the first column of tables headed "Query"; the `field:value` examples of the
  "Values" column; every line of the "Examples" block; the "Errors" block's lines that end with
  the query in parentheses; the `filter`, `facets`, `sort`, `histogram` and `heatmap` values of
  "Alongside the query".
- README.md: the query-language spans of the "Search" section; every GraphQL `search(...)`
  call in a code block or a `curl -d` body (run verbatim, then compared with REST).
The cases searched are real AIID incidents, seeded so that the main examples have hits.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    FieldNode,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    parse,
    value_from_ast_untyped,
)

from tests.catalog.builders import unique
from tests.conftest import auth_header
from tests.corpus import aiid_cases
from tests.gateway.helpers import gql

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
QUERY_MD = ROOT / "services" / "search" / "QUERY.md"

# Spans that show the syntax's shape rather than an example to run.
PLACEHOLDERS = {"field:value"}
# A unique word in every seeded title: the parameter examples ("Alongside the query") search
# within the seeded cases, so their answers are small and hit known values.
MARKER = "docexample" + secrets.token_hex(3)


@dataclass(frozen=True)
class Example:
    source: str  # file:line, for the test id and failure messages
    q: str = ""
    facets: tuple[str, ...] = ()
    filter: dict[str, Any] | None = None
    first: int = 20
    sort: str = "relevance"
    histogram: str | None = None
    heatmap: tuple[str, str] | None = None
    error: str | None = None  # the documented message, for an example of an error
    must_hit: bool = False  # a headline example: the seeded cases must match it
    graphql: str | None = None  # the documented GraphQL document, run verbatim
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        knobs = [f"q={self.q}" if self.q != MARKER else "q=<seeded>"]
        knobs += [f"facets={','.join(self.facets)}"] if self.facets else []
        knobs += [f"sort={self.sort}"] if self.sort != "relevance" else []
        for name in ("filter", "histogram", "heatmap"):
            if getattr(self, name):
                knobs.append(f"{name}={getattr(self, name)}")
        return f"{self.source} {' '.join(knobs)}"


# ---- reading the markdown ---------------------------------------------------------------------

SPAN = re.compile(r"`([^`]+)`")
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.M | re.S)


def sections(text: str) -> list[tuple[str, int, str]]:
    """(heading, line of the heading, body) for every heading of any level."""
    out: list[tuple[str, int, list[str]]] = [("", 1, [])]
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        fenced ^= line.startswith("```")
        if line.startswith("#") and not fenced:
            out.append((line.lstrip("#").strip(), n, []))
        else:
            out[-1][2].append(line)
    return [(h, n, "\n".join(body)) for h, n, body in out]


def line_of(text: str, needle: str, start: int = 1) -> int:
    lines = text.splitlines()
    for n in range(start - 1, len(lines)):
        if needle.split("\n")[0] in lines[n]:
            return n + 1
    return start


def table_examples(name: str, text: str) -> list[Example]:
    """Tables headed "Query" give their first column; a "Values" column its `field:` spans."""
    out = []
    header: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
            continue
        if set(line) <= set("|-: "):
            continue
        for title, cell in zip(header, cells, strict=False):
            spans = SPAN.findall(cell)
            if title == "Query" and cell is cells[0]:
                out += [Example(f"{name}:{n}", q=s) for s in spans]
            elif title == "Values":
                out += [Example(f"{name}:{n}", q=s) for s in spans if ":" in s]
    return out


ERROR_LINE = re.compile(r"^(?P<message>\S.*?)\s{2,}\((?P<query>.*)\)\s*$")


def query_md_examples() -> list[Example]:
    text = QUERY_MD.read_text(encoding="utf-8")
    out = table_examples("QUERY.md", text)
    for heading, start, body in sections(text):
        fences = FENCE.findall(body + "\n")
        if heading == "Examples":
            for _, block in fences:
                for q in filter(None, (ln.strip() for ln in block.splitlines())):
                    out.append(Example(f"QUERY.md:{line_of(text, q, start)}", q=q, must_hit=True))
        elif heading == "Errors":
            for _, block in fences:
                for ln in block.splitlines():
                    m = ERROR_LINE.match(ln.strip())
                    if m:  # lines without a query only describe the message
                        out.append(
                            Example(
                                f"QUERY.md:{line_of(text, ln.strip(), start)}",
                                q=m["query"],
                                error=m["message"],
                            )
                        )
        elif heading == "Alongside the query":
            out += parameter_examples(text, start, body)
    return out + graphql_examples("QUERY.md", text)


# A clause of "Alongside the query" that documents a parameter starts with its name.
PARAMETER = re.compile(r"^-?\s*`(filter|facets|sort|histogram|heatmap)`\s*[:(]")
# Within such a clause, the spans that are values of that parameter.
VALUE_SHAPES = {
    "sort": re.compile(r"^-?[a-z_]+$"),
    "histogram": re.compile(r"^[a-z]+$"),
    "heatmap": re.compile(r"^[a-z_.]+,[a-z_.]+$"),
    "filter": re.compile(r"^\{.*\}$", re.S),
    "facets": re.compile(r"^[a-z_]+(\.[a-z_]+)?(,\s*[a-z_]+(\.[a-z_]+)?)*$"),
}


def parameter_examples(text: str, start: int, body: str) -> list[Example]:
    out = []
    facets: list[str] = []
    # Clauses end at ";" or at a sentence's end (not at "e.g." or "i.e.").
    for clause in re.split(r"(?<!e\.g)(?<!i\.e)\.\s+|;\s*|\n(?=- )", body):
        m = PARAMETER.match(clause.strip())
        if not m:
            continue
        name = m[1]
        values = [s for s in SPAN.findall(clause)[1:] if VALUE_SHAPES[name].match(s.strip())]
        where = f"QUERY.md:{line_of(text, clause.strip(), start)}"
        for value in values:
            value = " ".join(value.split())
            if name == "facets":
                facets += [v.strip() for v in value.split(",")]
            elif name == "filter":
                out.append(Example(where, q=MARKER, filter=json.loads(value), facets=("severity",)))
            elif name == "heatmap":
                x, y = value.split(",")
                out.append(Example(where, q=MARKER, heatmap=(x, y), must_hit=True))
            elif name == "histogram":
                out.append(Example(where, q=MARKER, histogram=value))
            else:
                out.append(Example(where, q=MARKER, sort=value, first=3))
        if name == "facets":
            out.append(Example(where, q=MARKER, facets=tuple(facets)))
    return out


def readme_examples() -> list[Example]:
    text = README.read_text(encoding="utf-8")
    out = []
    for heading, start, body in sections(text):
        if heading != "Search":
            continue
        for span in SPAN.findall(body):
            if span in PLACEHOLDERS or any(c in span for c in "(/?"):
                continue
            if ":" in span or span.startswith('"'):
                out.append(Example(f"README.md:{line_of(text, span, start)}", q=span))
    return out + graphql_examples("README.md", text)


def graphql_examples(name: str, text: str) -> list[Example]:
    """`search(...)` calls in graphql code blocks, in `curl -d '{"query": ...}'` bodies and in
    inline spans that parse as a GraphQL document."""
    documents: list[tuple[int, str]] = []  # (offset in the file, document)
    for fence in FENCE.finditer(text):
        if fence[1] == "graphql":
            documents.append((fence.start(2), fence[2]))
        for body in re.finditer(r"-d '(\{.*?\})'", fence[2], re.S):
            documents.append((fence.start(2) + body.start(1), json.loads(body[1])["query"]))
    for span in SPAN.finditer(text):
        if "search(" in span[1]:
            doc = span[1] if span[1].lstrip().startswith(("{", "query")) else f"{{ {span[1]} }}"
            documents.append((span.start(), doc))
    out = []
    for offset, doc in documents:
        try:
            parsed = parse(doc)
        except GraphQLSyntaxError:
            continue  # a signature such as Query.search(query, filter, ...), not a document
        for op in parsed.definitions:
            if not isinstance(op, OperationDefinitionNode):
                continue
            for sel in op.selection_set.selections:
                if isinstance(sel, FieldNode) and sel.name.value == "search":
                    args = {a.name.value: value_from_ast_untyped(a.value) for a in sel.arguments}
                    where = f"{name}:{text.count(chr(10), 0, offset) + 1}"
                    out.append(from_graphql_args(where, doc, args))
    return out


def from_graphql_args(source: str, doc: str, args: dict[str, Any]) -> Example:
    heatmap = args.get("heatmap")
    return Example(
        source,
        q=args.get("query", ""),
        facets=tuple(args.get("facets") or ()),
        filter={snake(k): v for k, v in args["filter"].items()} if args.get("filter") else None,
        first=args.get("first", 20),
        sort=args.get("sort", "relevance"),
        histogram=args.get("histogram"),
        heatmap=(heatmap["x"], heatmap["y"]) if heatmap else None,
        must_hit=True,
        graphql=doc,
    )


def snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), name)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


EXAMPLES = query_md_examples() + readme_examples()


def test_the_markdown_yields_every_kind_of_example() -> None:
    """The extraction itself: if a heading or table moved, this says so (instead of the
    parametrized tests quietly running fewer examples)."""
    kinds = {
        "QUERY.md tables": [e for e in EXAMPLES if e.source.startswith("QUERY") and "." in e.q],
        "QUERY.md Examples block": [
            e for e in EXAMPLES if e.source.startswith("QUERY") and e.must_hit and " " in e.q
        ],
        "QUERY.md errors": [e for e in EXAMPLES if e.error],
        "heatmap": [e for e in EXAMPLES if e.heatmap],
        "histogram": [e for e in EXAMPLES if e.histogram],
        "sort": [e for e in EXAMPLES if e.sort != "relevance"],
        "filter": [e for e in EXAMPLES if e.filter],
        "facets": [e for e in EXAMPLES if len(e.facets) > 5],
        "README query language": [e for e in EXAMPLES if e.source.startswith("README") and e.q],
        "README GraphQL": [e for e in EXAMPLES if e.graphql and e.source.startswith("README")],
    }
    assert all(kinds.values()), [k for k, v in kinds.items() if not v]
    assert len({e.q for e in EXAMPLES}) >= 30
    assert ("failure_mode", "model_version") in {e.heatmap for e in EXAMPLES}


# ---- the cases searched -----------------------------------------------------------------------


def seed_cases() -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)

    def ago(days: int) -> str:
        return (now - timedelta(days=days)).isoformat().replace("+00:00", "Z")

    fraud = {"name": "fraud-detector", "version": "3.2.0"}
    overrides: list[dict[str, Any]] = [
        {
            "title": f"{MARKER}: refund scored as fraud with 0.97 confidence",
            "summary": "A customer's refund was scored as fraud and blocked.",
            "model": fraud,
            "severity": "S2",
            "failure_mode": "label_noise.mislabeled_target",
            "tags": ["refunds"],
            "environment": {"region": "eu-west-1", "app_version": "7.4.1"},
            "team": "payments-ml",
            "confidence": 0.97,
            "occurred_at": ago(1),
        },
        {
            "title": f"{MARKER}: prompt injection makes the assistant leak its instructions",
            "severity": "S1",
            "failure_mode": "safety.harmful_content",
            "sensitivity": "confidential",
            "team": "assistant-ml",
            "environment": {"region": "us-east-1", "hardware": "a100"},
            "occurred_at": ago(2),
        },
        {
            "title": f"{MARKER}: risk scores drift after a merchant category change",
            "model": {"name": "risk-scorer", "version": "1.4.0"},
            "severity": "S3",
            "failure_mode": "distribution_shift.concept_drift",
            "occurred_at": ago(10),
        },
        {
            "title": f"{MARKER}: checkout timeout under load",
            "model": fraud,
            "severity": "S0",
            "latency_ms": 900.0,
            "tags": ["timeout"],
            "environment": {"region": "eu-west-1"},
            "team": "payments-ml",
            "occurred_at": ago(40),
        },
        {
            "title": f"{MARKER}: low confidence on relabelled images",
            "summary": "The label noise in the January batch: many targets were mislabelled.",
            "confidence": 0.2,
            "severity": "S1",
            "failure_mode": "label_noise.mislabeled_target",
            "tags": [],
            "occurred_at": "2026-01-15T13:00:00Z",
        },
        {
            "title": f"{MARKER}: a known issue with uncertain scores",
            "confidence": 0.25,
            "tags": ["known-issue"],
            "sensitivity": "restricted",
            "occurred_at": "2026-01-20T08:00:00Z",
        },
        {"title": f"{MARKER}: an older incident", "occurred_at": "2025-06-01T00:00:00Z"},
    ]
    cases = unique(aiid_cases(len(overrides)))
    for case, over in zip(cases, overrides, strict=True):
        case.update(over)
    return cases


@pytest.fixture(scope="module")
async def reader(client, token_for, app) -> dict[str, str]:
    """A reader who may see every seeded case; the seed is indexed when this returns."""
    writer = auth_header(await token_for("cases:ingest"))
    resp = await client.post("/catalog/v1/cases:bulk", json=seed_cases(), headers=writer)
    assert resp.json()["counts"]["created"] == len(seed_cases()), resp.text
    headers = auth_header(await token_for("cases:read", clearance="restricted"))
    for _ in range(100):
        await app.state.search.drain_outbox()
        r = await client.get("/search/v1/cases", params={"q": MARKER}, headers=headers)
        if r.json()["total"] == len(seed_cases()):
            return headers
        await asyncio.sleep(0.1)
    raise AssertionError("the seeded cases were not searchable within 10 s")


# ---- one example through both surfaces -------------------------------------------------------

SEARCH = """query Search($query: String!, $filter: SearchFilterInput, $facets: [String!],
  $first: Int!, $sort: String!, $histogram: String, $heatmap: HeatmapInput) {
  search(query: $query, filter: $filter, facets: $facets, first: $first, sort: $sort,
         histogram: $histogram, heatmap: $heatmap) {
    total totalIsLowerBound
    hits { score highlights { field snippets } case { id title } }
    facets { field buckets { value count } }
    histogram { value count }
    heatmap { x y count }
    pageInfo { hasNextPage endCursor }
  }
}"""


def rest_params(ex: Example) -> dict[str, Any]:
    params: dict[str, Any] = {"q": ex.q, "first": ex.first, "sort": ex.sort}
    if ex.facets:
        params["facets"] = ",".join(ex.facets)
    if ex.filter is not None:
        params["filter"] = json.dumps(ex.filter)
    if ex.histogram:
        params["histogram"] = ex.histogram
    if ex.heatmap:
        params["heatmap"] = ",".join(ex.heatmap)
    return params


def graphql_variables(ex: Example) -> dict[str, Any]:
    return {
        "query": ex.q,
        "facets": list(ex.facets) or None,
        "filter": {camel(k): v for k, v in ex.filter.items()} if ex.filter else None,
        "first": ex.first,
        "sort": ex.sort,
        "histogram": ex.histogram,
        "heatmap": {"x": ex.heatmap[0], "y": ex.heatmap[1]} if ex.heatmap else None,
    }


def camel_keys(value: Any) -> Any:
    """REST keys in GraphQL's spelling, whichever casing the REST surface uses."""
    if isinstance(value, dict):
        return {camel(k): camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def from_rest(body: dict[str, Any]) -> dict[str, Any]:
    body = camel_keys(body)
    for hit in body["hits"]:
        assert hit["case"] is None or hit["case"]["id"] == hit["id"]
    return {
        "total": body["total"],
        "totalIsLowerBound": body["totalIsLowerBound"],
        "hits": [
            {
                "id": h["id"],
                "title": h["case"]["title"] if h["case"] else None,
                "score": h["score"],
                "highlights": h["highlights"],
            }
            for h in body["hits"]
        ],
        "facets": body["facets"],
        "histogram": body["histogram"],
        "heatmap": body["heatmap"],
        "pageInfo": body["pageInfo"],
    }


def from_graphql(search: dict[str, Any]) -> dict[str, Any]:
    return {
        **search,
        "hits": [
            {
                "id": h["case"]["id"] if h["case"] else None,
                "title": h["case"]["title"] if h["case"] else None,
                "score": h["score"],
                "highlights": h["highlights"],
            }
            for h in search["hits"]
        ],
    }


async def both(client, headers, ex: Example) -> tuple[Any, Any]:
    rest = await client.get("/search/v1/cases", params=rest_params(ex), headers=headers)
    body = await gql(client, headers["Authorization"].split()[1], SEARCH, graphql_variables(ex))
    return rest, body


@pytest.mark.parametrize("ex", EXAMPLES, ids=[e.id for e in EXAMPLES])
async def test_rest_and_graphql_answer_alike(client, reader, ex: Example) -> None:
    if ex.error is not None:
        rest, body = await both(client, reader, ex)
        assert rest.status_code == 400, (ex.source, rest.text)
        problem = rest.json()
        assert problem["code"] == "BAD_USER_INPUT"
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["errors"] == problem["errors"]
        assert problem["errors"][0]["path"] == "query"
        documented = ex.error.split("...")[0].rstrip()
        assert problem["errors"][0]["message"].startswith(documented), (ex.source, problem)
        return
    # The index may still be taking other tests' cases: compare two answers taken while
    # REST answered the same before and after GraphQL.
    for _ in range(50):
        first, body = await both(client, reader, ex)
        assert first.status_code == 200, (ex.source, first.text)
        assert "errors" not in body, (ex.source, body["errors"])
        again = await client.get("/search/v1/cases", params=rest_params(ex), headers=reader)
        if from_rest(first.json()) == from_rest(again.json()):
            break
        await asyncio.sleep(0.1)
    expected = from_rest(first.json())
    assert from_graphql(body["data"]["search"]) == expected, ex.source
    if ex.must_hit:
        assert expected["total"] > 0, f"{ex.source}: no seeded case matches; add one to the seed"
        if ex.heatmap:
            assert expected["heatmap"], ex.source
    if ex.graphql is not None:
        # The document as documented runs too, and finds what the comparison found.
        token = reader["Authorization"].split()[1]
        verbatim = await gql(client, token, ex.graphql)
        assert "errors" not in verbatim, (ex.source, verbatim["errors"])
        assert verbatim["data"]["search"].get("total", expected["total"]) == expected["total"]
