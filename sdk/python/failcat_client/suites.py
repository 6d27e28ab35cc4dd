"""Regression suites from a failcat server (or its JSONL export) and evaluation runs back to it:
what the pytest plugin talks to, usable from any other runner too.

    with SuiteServer(url, client_id, client_secret) as server:
        suite = server.fetch("fraud-regressions")            # the latest version
        ... run suite.cases ...
        run = server.report(suite, version="3.3.0", outcomes=[...])

Every problem is a `SuiteError` whose message says what to do about it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

import httpx

from failcat_client._auth import AuthError, TokenState
from failcat_client._wire import dumps

# A suite export line must carry these (the server's export writes more).
REQUIRED = ("case_id", "input", "expected")
# "." and ".." would be dropped from the export's URL. (The server now also wants new names
# to begin with a letter or digit; older suites named "_x" are still fetched.)
SUITE_NAME = re.compile(r"^(?!\.\.?$)[A-Za-z0-9._\-]+$")
TIMEOUT = httpx.Timeout(120.0, connect=10.0)
# The server's limit on a GraphQL request body is 1 MiB; a larger run goes over REST.
GRAPHQL_MAX_BYTES = 1_000_000

SUITE_MODEL = "query($n: String!, $v: Int) { suite(name: $n, version: $v) { model version } }"
RECORD_RUN = """mutation($run: EvaluationRunInput!) { recordEvaluationRun(run: $run) {
  id total passed failed errored notRun passRate latencyP50Ms latencyP95Ms
  proposals { id groupId } } }"""


class SuiteError(Exception):
    """A suite could not be read or a run not recorded; the message is for a person."""


@dataclass
class Suite:
    """One frozen suite version: its cases in suite order, as the export lines them."""

    name: Optional[str]
    version: Optional[int]
    cases: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""


def parse_ref(ref: str) -> tuple[str, Optional[int]]:
    """`NAME` or `NAME@VERSION` (a number, or `latest`) as (name, version or None)."""
    name, at, version = ref.strip().partition("@")
    if not SUITE_NAME.match(name):
        raise SuiteError(
            f"--failcat-suite {ref!r}: a suite name is letters, digits, '.', '_', '-' "
            "(not '.' or '..')"
        )
    if not at or version == "latest":
        return name, None
    # ASCII digits: str.isdigit() also accepts '²', which int() refuses.
    if not (version.isascii() and version.isdigit()) or int(version) < 1:
        raise SuiteError(f"--failcat-suite {ref!r}: the version is a number from 1, or latest")
    return name, int(version)


def parse_lines(lines: Any, source: str) -> Suite:
    """A suite from JSONL lines (str or bytes); each bad line is reported by its number."""
    cases = []
    for number, raw in enumerate(lines, 1):
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            raise SuiteError(f"{source}, line {number}: not UTF-8 text") from None
        if not text.strip():
            continue
        try:
            case = json.loads(text)
        except ValueError as exc:
            raise SuiteError(f"{source}, line {number}: not JSON ({exc})") from None
        if not isinstance(case, dict):
            raise SuiteError(f"{source}, line {number}: expected a JSON object")
        missing = [key for key in REQUIRED if key not in case]
        if missing:
            raise SuiteError(f"{source}, line {number}: no {', '.join(missing)}")
        cases.append(case)
    name = cases[0].get("suite") if cases else None
    version = cases[0].get("suite_version") if cases else None
    return Suite(name, version, cases, source)


def read_file(path: Path) -> Suite:
    """A suite from a JSONL export (`failcat suites export`, or the REST route's answer)."""
    try:
        with path.open("rb") as fh:
            return parse_lines(fh, str(path))
    except OSError as exc:
        raise SuiteError(f"--failcat-suite-file {path}: {exc.strerror or exc}") from None


def server_url(explicit: Optional[str]) -> str:
    url = explicit or os.environ.get("FAILCAT_URL") or ""
    if not url:
        raise SuiteError("which server? pass --failcat-url URL or set FAILCAT_URL")
    if not url.startswith(("http://", "https://")):
        raise SuiteError(f"--failcat-url {url}: expected an http(s):// URL")
    return url.rstrip("/")


def _problem(response: httpx.Response) -> str:
    """A refusal as one line: problem+json detail and field errors, or the status."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    errors = "; ".join(f"{e.get('path')}: {e.get('message')}" for e in body.get("errors") or [])
    detail = body.get("detail") or body.get("title") or f"HTTP {response.status_code}"
    return f"{detail} ({errors})" if errors else str(detail)


class SuiteServer:
    """A failcat server, reached with OAuth client credentials (`FAILCAT_CLIENT_ID` and
    `FAILCAT_CLIENT_SECRET` unless given): the token is fetched on first use."""

    def __init__(
        self,
        url: Optional[str] = None,
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        *,
        timeout: Any = TIMEOUT,
    ) -> None:
        self.url = server_url(url)
        client_id = client_id or os.environ.get("FAILCAT_CLIENT_ID")
        client_secret = client_secret or os.environ.get("FAILCAT_CLIENT_SECRET")
        if not client_id or not client_secret:
            raise SuiteError(
                "no credentials: set FAILCAT_CLIENT_ID and FAILCAT_CLIENT_SECRET "
                "(an OAuth client of the server, e.g. from `failcat clients create`)"
            )
        self._tokens = TokenState(self.url, client_id, client_secret, None, None)
        self._http = httpx.Client(timeout=timeout)

    def __enter__(self) -> SuiteServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- transport -----------------------------------------------------------------------
    def _token(self, force: bool = False) -> str:
        token = None if force else self._tokens.current()
        if token is not None:
            return token
        try:
            return self._tokens.fetch_sync(self._http)
        except AuthError as exc:
            raise SuiteError(
                f"FAILCAT_CLIENT_ID/FAILCAT_CLIENT_SECRET refused by {self.url}: {exc}"
            ) from None
        except httpx.HTTPStatusError as exc:
            raise SuiteError(
                f"{self.url} does not look like a failcat server ({exc}); check --failcat-url"
            ) from None
        except httpx.TransportError as exc:
            raise SuiteError(f"cannot reach {self.url}: {exc or type(exc).__name__}") from None
        except ValueError:
            raise SuiteError(f"{self.url} does not look like a failcat server") from None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authenticated request; a 401 gets one fresh token and one retry."""
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in (0, 1):
            headers["Authorization"] = f"Bearer {self._token(force=attempt == 1)}"
            try:
                response = self._http.request(method, self.url + path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                raise SuiteError(f"cannot reach {self.url}: {exc or type(exc).__name__}") from None
            if response.status_code != 401:
                return response
        raise SuiteError(f"{self.url} refused the token: {_problem(response)}")

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self._request("POST", "/graphql", json={"query": query, "variables": variables})
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SuiteError(f"{self.url}/graphql: HTTP {response.status_code}")
        errors = body.get("errors") or []
        if errors:
            first = errors[0]
            code = (first.get("extensions") or {}).get("code", "ERROR")
            fields = "; ".join(
                f"{e.get('path')}: {e.get('message')}"
                for e in (first.get("extensions") or {}).get("errors") or []
            )
            message = f"{code}: {first.get('message')}" + (f" ({fields})" if fields else "")
            raise SuiteError(message)
        return dict(body["data"])

    # ---- suites and runs -----------------------------------------------------------------
    def fetch(self, name: str, version: Optional[int] = None) -> Suite:
        """A suite version's cases that this client may see (`cases:read`); the latest version
        when `version` is None."""
        label = f"{name}@{version or 'latest'}"
        path = f"/safeguards/v1/suites/{quote(name, safe='')}/{version or 'latest'}.jsonl"
        response = self._request("GET", path)
        if response.status_code == 404:
            raise SuiteError(f"suite {label} not found on {self.url}: {_problem(response)}")
        if response.status_code == 403:
            raise SuiteError(
                f"suite {label}: this client may not read it ({_problem(response)}); "
                "it needs the cases:read scope"
            )
        if response.status_code != 200:
            raise SuiteError(f"suite {label} from {self.url}: {_problem(response)}")
        suite = parse_lines(response.iter_lines(), f"{self.url}{path}")
        suite.name = suite.name or name
        header = response.headers.get("X-Failcat-Suite-Version", "")
        if suite.version is None and header.isdigit():
            suite.version = int(header)  # an empty (or entirely hidden) suite has no line
        return suite

    def model_of(self, name: str, version: Optional[int]) -> str:
        """The model a suite evaluates (runs are recorded against it)."""
        return str(self.graphql(SUITE_MODEL, n=name, v=version)["suite"]["model"])

    def report(
        self,
        suite: Suite,
        version: str,
        outcomes: list[dict[str, Any]],
        model: Optional[str] = None,
    ) -> dict[str, Any]:
        """Record `outcomes` (`{caseId, outcome: PASS|FAIL|ERROR, latencyMs, prediction,
        error}`) as an evaluation run of `model` (the suite's) at `version`
        (`evals:write`)."""
        if suite.name is None:
            raise SuiteError("the suite has no name (an empty export file?): nothing to report")
        model = model or self.model_of(suite.name, suite.version)
        run = {
            "model": model,
            "version": version,
            "suite": suite.name,
            "suiteVersion": suite.version,
            "outcomes": outcomes,
        }
        body = dumps({"query": RECORD_RUN, "variables": {"run": run}})
        if len(body) <= GRAPHQL_MAX_BYTES:
            answer = dict(self.graphql(RECORD_RUN, run=run)["recordEvaluationRun"])
        else:
            answer = self._report_rest(run)
        answer["model"] = model
        return answer

    def _report_rest(self, run: dict[str, Any]) -> dict[str, Any]:
        """A run too large for one GraphQL request goes to `POST /safeguards/v1/runs` (the same
        operation in snake_case, with a limit sized for a full suite)."""
        rest = {
            "model": run["model"],
            "version": run["version"],
            "suite": run["suite"],
            "suite_version": run["suiteVersion"],
            "outcomes": [
                {
                    "case_id": o["caseId"],
                    "outcome": o["outcome"].lower(),
                    "latency_ms": o.get("latencyMs"),
                    "prediction": o.get("prediction"),
                    "error": o.get("error"),
                }
                for o in run["outcomes"]
            ],
        }
        response = self._request(
            "POST",
            "/safeguards/v1/runs",
            content=dumps(rest),
            headers={"Content-Type": "application/json"},
        )
        if response.status_code != 201:
            raise SuiteError(f"recording the run on {self.url}: {_problem(response)}")
        body = response.json()
        total = body["total"]
        return {
            "id": body["id"],
            "total": total,
            "passed": body["passed"],
            "failed": body["failed"],
            "errored": body["errored"],
            "notRun": body["not_run"],
            "passRate": body["passed"] / total if total else None,
            "proposals": [{"id": p["id"], "groupId": p["group_id"]} for p in body["proposals"]],
        }
