"""Every bad input gets a coded client error, never INTERNAL (issue 9 item 5), and the OpenAPI
document describes the REST wire format (issue 10 item 9).

schemathesis generates requests from the app's own schemas, in process (its ASGI transport):
the GraphQL schema by introspection and /openapi.json, on both backends, authenticated with an
admin token. Each answer is judged by the check below: no 5xx (a 503 would be an outage, which
a healthy backend must not have) and no `INTERNAL` code, in a GraphQL error's
`extensions.code` or a problem+json `code`. schemathesis's own GraphQL server-error check is
not used: it counts every error with a `path` (NOT_FOUND, BAD_USER_INPUT from a resolver) as a
server failure, so the answers are judged by their codes instead.

The app under test is a second instance on a database and index of its own: schemathesis runs
it in its own event loop thread, and the random mutations it sends (sampling rules, disabled
clients, rotated keys) must not leak into the session database other tests share. The run is
bounded and derandomized (same examples on every run); FAILCAT_FUZZ_EXAMPLES raises the number
of examples per operation for a long run.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from graphql import (
    BooleanValueNode,
    FloatValueNode,
    IntValueNode,
    ListValueNode,
    NameNode,
    NullValueNode,
    ObjectFieldNode,
    ObjectValueNode,
    StringValueNode,
    ValueNode,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from services.catalog import openapi as doc
from services.catalog.schemas import CaseIn
from services.gateway.app import create_app
from services.search import openapi as search_doc
from shared.migrate import upgrade_async
from shared.settings import Settings
from tests.catalog.builders import unique
from tests.conftest import auth_header, make_settings

EXAMPLES = int(os.environ.get("FAILCAT_FUZZ_EXAMPLES", "30"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
BULK = "/catalog/v1/cases:bulk"


def json_node(value: Any) -> ValueNode:
    """A JSON value as the GraphQL literal strawberry's JSON scalar parses back."""
    if isinstance(value, dict):
        fields = [
            ObjectFieldNode(name=NameNode(value=k), value=json_node(v)) for k, v in value.items()
        ]
        return ObjectValueNode(fields=tuple(fields))
    if isinstance(value, list):
        return ListValueNode(values=tuple(json_node(v) for v in value))
    if isinstance(value, bool):
        return BooleanValueNode(value=value)
    if isinstance(value, int):
        return IntValueNode(value=str(value))
    if isinstance(value, float):
        return FloatValueNode(value=repr(value))
    if value is None:
        return NullValueNode()
    return StringValueNode(value=value)


# JSON arguments (annotation values, case payloads): schemathesis has no strategy of its own.
GRAPHQL_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(GRAPHQL_NAMES, inner, max_size=3),
    max_leaves=8,
)
schemathesis.graphql.scalar("JSON", JSON_VALUES.map(json_node))
CLIENT_ERROR_CODES = {
    "BAD_USER_INPUT",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "CONFLICT",
    "PAYLOAD_TOO_LARGE",
}


class FuzzTarget:
    """The app under test and an admin token for it (the bootstrap admin client's)."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.settings = settings
        self.token = ""

    def authenticate(self) -> None:
        from schemathesis.python import asgi

        # Entering the client starts the app's lifespan in schemathesis's event loop thread;
        # the lifespan creates the bootstrap admin client.
        with asgi.get_client(self.app) as client:
            creds = json.loads((self.settings.data_dir / "bootstrap-client.json").read_text())
            resp = client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(creds["client_id"], creds["client_secret"]),
            )
            assert resp.status_code == 200, resp.text
            self.token = resp.json()["access_token"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
async def fuzz_settings(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = await make_settings(backend, tmp_path_factory.mktemp(f"fuzz-{backend}"))
    await upgrade_async(s.catalog_url)
    return s


@pytest.fixture(scope="module")
def target(fuzz_settings: Settings) -> Iterator[FuzzTarget]:
    from schemathesis.python import asgi

    t = FuzzTarget(fuzz_settings)
    t.authenticate()
    yield t
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def graphql_schema(target: FuzzTarget) -> Any:
    return schemathesis.graphql.from_asgi("/graphql", target.app, headers=target.headers)


@pytest.fixture(scope="module")
def openapi_schema(target: FuzzTarget) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", target.app)


def assert_coded(response: Any, label: str) -> None:
    """A client error carries a client code; nothing answers 5xx or INTERNAL."""
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:500]}"
    try:
        body = response.json()
    except ValueError:
        return  # not JSON (a page, a redirect): its status was judged above
    if not isinstance(body, dict):
        return
    if "errors" in body and isinstance(body["errors"], list) and "data" in body:
        codes = [(e.get("extensions") or {}).get("code") for e in body["errors"]]
    else:
        codes = [body.get("code")] if "code" in body else []
    assert "INTERNAL" not in codes, f"{label}: {response.text[:1000]}"


def fuzz(schema: Any, target: FuzzTarget, modes: tuple[GenerationMode, ...]) -> list[str]:
    """Every operation of `schema`, in each mode; the failures of all of them (shrunk by
    Hypothesis to a small reproduction), so one broken operation does not hide another."""
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in modes:
            try:
                fuzz_operation(operation, mode, target)
            except Unsatisfiable:
                pass  # nothing to make invalid (an operation without parameters or body)
            except Exception as exc:  # an assertion, or Hypothesis's FlakyFailure group
                failures.append(describe(exc))
    return failures


def describe(exc: BaseException) -> str:
    """The assertion messages (with their reproductions), also from inside an exception
    group: a stateful server makes Hypothesis report some failures as flaky."""
    if isinstance(exc, BaseExceptionGroup):
        return "\n".join(describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def fuzz_operation(operation: Any, mode: GenerationMode, target: FuzzTarget) -> None:
    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(headers=target.headers)
        assert_coded(response, f"{operation.label} ({mode.value})\n{reproduce(case)}")

    run()


def reproduce(case: Any) -> str:
    return f"{case.method} {case.formatted_path} query={case.query} body={case.body!r}"[:2000]


def test_graphql_answers_coded_errors(graphql_schema: Any, target: FuzzTarget) -> None:
    failures = fuzz(graphql_schema, target, (GenerationMode.POSITIVE,))
    assert not failures, "\n\n".join(failures)


def test_rest_answers_coded_errors(openapi_schema: Any, target: FuzzTarget) -> None:
    failures = fuzz(openapi_schema, target, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE))
    assert not failures, "\n\n".join(failures)


# ---- the OpenAPI document describes the wire format (issue 10 item 9) ----------------------


async def test_openapi_has_request_and_response_schemas(client: Any) -> None:
    spec = (await client.get("/openapi.json")).json()
    bulk = spec["paths"]["/catalog/v1/cases:bulk"]["post"]
    body = bulk["requestBody"]["content"]
    array = body["application/json"]["schema"]
    assert array["type"] == "array"
    assert set(array["items"]["required"]) == {"model", "data_source"}
    assert set(array["items"]["properties"]["model"]["required"]) == {"name", "version"}
    assert "$ref" not in json.dumps(array)  # self-contained: nothing left to dangle
    # (FastAPI leaves null members out of examples)
    example = {k: v for k, v in doc.CASE_EXAMPLE.items() if v is not None}
    assert body["application/json"]["example"][0] == example
    assert "application/x-ndjson" in body

    def answer(path: str, method: str = "get") -> str:
        ok = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        return ok["schema"]["$ref"].rsplit("/", 1)[-1]

    assert answer("/catalog/v1/cases:bulk", "post") == "BulkAnswer"
    assert answer("/catalog/v1/cases/{case_id}") == "CaseOut"
    assert answer("/catalog/v1/cases") == "CasePage"
    assert answer("/search/v1/cases") == "SearchAnswer"
    errors = spec["paths"]["/catalog/v1/cases:bulk"]["post"]["responses"]
    assert {"400", "401", "403", "413", "503"} <= set(errors)
    assert "Retry-After" in errors["503"]["headers"]


def test_documented_examples_match_their_models() -> None:
    CaseIn.model_validate(doc.CASE_EXAMPLE)
    CaseIn.model_validate(doc.MINIMAL_CASE_EXAMPLE)
    doc.BulkAnswer.model_validate(doc.BULK_ANSWER_EXAMPLE)
    doc.CaseOut.model_validate(doc.CASE_OUT_EXAMPLE)
    search_doc.SearchAnswer.model_validate(search_doc.SEARCH_ANSWER_EXAMPLE)


async def test_documented_examples_are_stored_and_answers_match_the_document(
    client: Any, admin_token: str
) -> None:
    headers = auth_header(admin_token)
    cases = unique([doc.CASE_EXAMPLE, {**doc.MINIMAL_CASE_EXAMPLE, "external_id": "minimal"}])
    resp = await client.post(BULK, json=cases, headers=headers)
    assert resp.status_code == 200, resp.text
    stored = doc.BulkAnswer.model_validate(resp.json())
    assert [r.status for r in stored.results] == ["created", "created"], resp.text

    # The NDJSON form of the same cases: the same items, so nothing is stored twice.
    ndjson = b"".join(orjson.dumps(c) + b"\n" for c in cases)
    again = await client.post(
        BULK, content=ndjson, headers=headers | {"Content-Type": "application/x-ndjson"}
    )
    assert [r["status"] for r in again.json()["results"]] == ["duplicate", "duplicate"]

    case_id = stored.results[0].id
    read = await client.get(f"/catalog/v1/cases/{case_id}", headers=headers)
    case = doc.CaseOut.model_validate(read.json())
    assert case.title == doc.CASE_EXAMPLE["title"]

    listed = await client.get("/catalog/v1/cases", params={"first": 2}, headers=headers)
    doc.CasePage.model_validate(listed.json())
    found = await client.get(
        "/search/v1/cases", params={"q": "refund", "facets": "severity"}, headers=headers
    )
    assert found.status_code == 200, found.text
    search_doc.SearchAnswer.model_validate(found.json())


# ---- what the fuzzing found, kept as plain regression tests --------------------------------


async def test_a_nul_character_is_bad_input_not_internal(client: Any, admin_token: str) -> None:
    """Postgres refuses NUL in text (SQLSTATE 22021): that is the caller's value, a 400 /
    BAD_USER_INPUT; SQLite stores it and finds nothing."""
    headers = auth_header(admin_token)
    gql = await client.post(
        "/graphql",
        json={"query": 'mutation { rotateClientSecret(clientId: "\\u0000") { clientSecret } }'},
        headers=headers,
    )
    codes = [e["extensions"]["code"] for e in gql.json()["errors"]]
    assert codes in (["BAD_USER_INPUT"], ["NOT_FOUND"]), gql.text
    rest = await client.get("/catalog/v1/cases/%00", headers=headers)
    assert rest.status_code in (400, 404), rest.text
    assert rest.json()["code"] in ("BAD_USER_INPUT", "NOT_FOUND")


async def test_top_level_json_numbers_read_back(client: Any, admin_token: str) -> None:
    """SQLite gives a JSON column NUMERIC affinity: `"input": 5` came back as the integer 5,
    which the JSON decoder refused, and every listing that included the case answered 500."""
    headers = auth_header(admin_token)
    [case] = unique([{**doc.MINIMAL_CASE_EXAMPLE, "external_id": "numbers"}])
    case |= {"input": 5, "prediction": 0.25, "expected": 7}
    resp = await client.post(BULK, json=[case], headers=headers)
    case_id = resp.json()["results"][0]["id"]
    read = await client.get(f"/catalog/v1/cases/{case_id}", headers=headers)
    assert read.status_code == 200, read.text
    assert (read.json()["input"], read.json()["prediction"], read.json()["expected"]) == (
        5,
        0.25,
        7,
    )
    listed = await client.get("/catalog/v1/cases", params={"first": 5}, headers=headers)
    assert listed.status_code == 200, listed.text


async def test_a_case_from_before_year_1000_does_not_stop_the_indexer(
    client: Any, admin_token: str
) -> None:
    """glibc's strftime wrote the year 273 as '273', which fromisoformat refused: the indexer
    retried that batch for ever and nothing ingested after it became searchable."""
    headers = auth_header(admin_token)
    word = "palimpsest" + secrets.token_hex(3)
    old, new = unique(
        [
            {**doc.MINIMAL_CASE_EXAMPLE, "external_id": "old", "title": f"Old {word}"},
            {**doc.MINIMAL_CASE_EXAMPLE, "external_id": "new", "title": f"New {word}"},
        ]
    )
    old["occurred_at"] = "0273-09-29T13:48:50.037Z"
    for case in (old, new):  # two requests: two outbox batches, the old one first
        resp = await client.post(BULK, json=[case], headers=headers)
        assert resp.json()["results"][0]["status"] == "created", resp.text
    deadline = time.monotonic() + 30
    total = 0
    while time.monotonic() < deadline and total < 2:
        await asyncio.sleep(0.3)
        found = await client.get("/search/v1/cases", params={"q": word}, headers=headers)
        total = found.json()["total"] if found.status_code == 200 else 0
    assert total == 2, "the indexer did not get past the year-273 case"
