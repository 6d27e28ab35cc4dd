"""The routes of the web pages (/ui/...). Each page makes a bounded number of API calls (one,
whatever the data size) with the signed-in person's token; see client.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from services.gateway.ui import charts, client, notebook, queries, signin, summary, views
from services.gateway.ui.state import (
    FACETS,
    INTERVALS,
    PAGE_SIZE,
    SORTS,
    SearchState,
    bucket_query,
    cell_urls,
    search_url,
    toggle_urls,
)
from shared.errors import FailcatError

TEMPLATES_DIR = Path(__file__).parent / "templates"
ASSETS_DIR = Path(__file__).parents[1] / "static" / "ui"
ASSETS_PATH = "/ui/assets"

# Scripts and styles from this origin only; nothing inline (charts are SVG markup, styled by
# classes and presentation attributes).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
# The standalone summary carries its own inline style (it must open as a single file).
SUMMARY_HEADERS = SECURITY_HEADERS | {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
}

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.filters["snippet"] = views.snippet
templates.env.filters["pretty_json"] = views.pretty_json
templates.env.globals.update(search_url=search_url, quote=quote)

router = APIRouter(prefix="/ui", include_in_schema=False)

# The remediation-time trend on the dashboard: monthly medians over the last year.
REMEDIATION_TREND = timedelta(days=365)


def mount_ui(app: FastAPI, role: str) -> None:
    """The pages, their assets, and (role "all": this process is the authorization server)
    their sign-in."""
    app.state.ui_serves_oauth = role == "all"
    # Every page answers the API's refusals the same way: no token (or an expired one) goes
    # to sign-in, any other error is the error page. Only the UI's API client raises these.
    app.add_exception_handler(client.SignInRequired, _sign_in_required)
    app.add_exception_handler(client.ApiError, _api_error)
    # A URL under /ui that no page answers (a mistyped path, a GET of a form's target) is
    # the styled error page too; the API's own paths keep their JSON answer.
    api_answer = app.exception_handlers[StarletteHTTPException]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not request.url.path.startswith("/ui/"):
            return await api_answer(request, exc)
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        error = client.ApiError(code, f"{exc.detail}: {request.method} {request.url.path}")
        return _page(request, "error.html", status=exc.status_code, error=error)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="ui-assets")


# ---- rendering ---------------------------------------------------------------------------------


def _token(request: Request) -> str | None:
    return request.cookies.get(signin.TOKEN_COOKIE)


def _viewer(request: Request) -> Any:
    """Who is signed in, for the header only (the API checks the token on every call)."""
    token = _token(request)
    if not token:
        return None
    try:
        return request.app.state.auth.authenticate(f"Bearer {token}")
    except FailcatError:  # expired or revoked: the header shows "Sign in"
        return None


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("viewer", _viewer(request))
    return templates.TemplateResponse(
        request, name, context, status_code=status, headers=SECURITY_HEADERS
    )


def _to_sign_in(request: Request) -> RedirectResponse:
    """To the sign-in page, or first to /ui/refresh when a refresh token may renew the
    session without the password; either comes back here."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    step = "/ui/refresh" if request.cookies.get(signin.REFRESH_COOKIE) else "/ui/signin"
    return RedirectResponse(
        f"{step}?" + urlencode({"next": target}), status_code=303, headers=SECURITY_HEADERS
    )


def _keep_tokens(request: Request, resp: Response, answer: dict[str, Any]) -> None:
    """The token endpoint's answer, in the pages' HttpOnly cookies."""
    resp.set_cookie(
        signin.TOKEN_COOKIE,
        answer["access_token"],
        max_age=int(answer.get("expires_in", 900)),
        **signin.cookie_options(request),
    )
    if answer.get("refresh_token"):
        resp.set_cookie(
            signin.REFRESH_COOKIE,
            answer["refresh_token"],
            max_age=signin.REFRESH_COOKIE_TTL_S,
            **signin.cookie_options(request),
        )


async def _token_endpoint(request: Request, form: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The answer of POST /oauth/token (in process), and the problem if there is no token."""
    answer = await client.post(request, "/oauth/token", data=form)
    is_json = answer.headers.get("content-type", "").startswith("application/json")
    body = answer.json() if is_json else {}
    if answer.status_code == 200 and "access_token" in body:
        return body, ""
    return body, body.get("error_description") or body.get("error") or "token refused"


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    return _to_sign_in(request)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, client.ApiError)
    return _error_page(request, exc)


def _error_page(request: Request, error: client.ApiError) -> HTMLResponse:
    status = {"NOT_FOUND": 404, "FORBIDDEN": 403, "BAD_USER_INPUT": 400}.get(error.code, 500)
    return _page(request, "error.html", status=status, error=error)


def _base(request: Request) -> str:
    return request.app.state.settings.issuer.rstrip("/")


# ---- sign-in -----------------------------------------------------------------------------------


@router.get("/signin")
async def sign_in(request: Request, next: str = "/ui/") -> Response:
    if not await signin.sign_in_available(request):
        return _page(request, "signin_unavailable.html", status=503)
    location, flow = signin.start(request.app.state.settings.issuer, next)
    resp = RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)
    resp.set_cookie(
        signin.FLOW_COOKIE,
        flow,
        max_age=signin.FLOW_TTL_S,
        **signin.cookie_options(request, signin.CALLBACK_PATH),
    )
    return resp


@router.get("/callback")
async def callback(request: Request) -> Response:
    params = request.query_params
    flow = signin.read_flow(request.cookies.get(signin.FLOW_COOKIE))
    problem = None
    if params.get("error"):
        problem = params.get("error_description") or params["error"]
    elif flow is None or flow["state"] != params.get("state") or not params.get("code"):
        problem = "this answer does not belong to a sign-in started in this browser"
    if problem is None:
        assert flow is not None
        form = signin.token_request(
            request.app.state.settings.issuer, params["code"], flow["verifier"]
        )
        body, problem = await _token_endpoint(request, form)
        problem = problem or None
    if problem is not None:
        resp: Response = _page(request, "signin_failed.html", status=400, problem=problem)
    else:
        resp = RedirectResponse(flow["next"], status_code=303, headers=SECURITY_HEADERS)
        _keep_tokens(request, resp, body)
    resp.delete_cookie(signin.FLOW_COOKIE, path=signin.CALLBACK_PATH)
    return resp


@router.get("/refresh")
async def refresh(request: Request, next: str = "/ui/") -> Response:
    """A new access token from the refresh token (which the server rotates), then back to
    `next`; when refused, the refresh cookie is dropped and the person signs in again."""
    target = signin.safe_next(next)
    saved = request.cookies.get(signin.REFRESH_COOKIE)
    body, problem = {}, "no refresh token"
    if saved:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": saved,
            "client_id": signin.UI_CLIENT_ID,
        }
        body, problem = await _token_endpoint(request, form)
    if problem:
        resp = RedirectResponse(
            "/ui/signin?" + urlencode({"next": target}), status_code=303, headers=SECURITY_HEADERS
        )
        resp.delete_cookie(signin.REFRESH_COOKIE, path="/ui")
        return resp
    resp = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    _keep_tokens(request, resp, body)
    return resp


@router.post("/signout")
async def sign_out(request: Request) -> Response:
    # Both tokens stop working everywhere, not only in this browser.
    for cookie, hint in (
        (signin.TOKEN_COOKIE, "access_token"),
        (signin.REFRESH_COOKIE, "refresh_token"),
    ):
        token = request.cookies.get(cookie)
        if token:
            await client.post(
                request,
                "/oauth/revoke",
                data={"token": token, "token_type_hint": hint, "client_id": signin.UI_CLIENT_ID},
            )
    # Post/redirect/get: reloading the page that follows does not post again.
    resp = RedirectResponse("/ui/signout", status_code=303, headers=SECURITY_HEADERS)
    resp.delete_cookie(signin.TOKEN_COOKIE, path="/ui")
    resp.delete_cookie(signin.REFRESH_COOKIE, path="/ui")
    return resp


@router.get("/signout")
async def signed_out(request: Request) -> Response:
    return _page(request, "signed_out.html")


# ---- search ------------------------------------------------------------------------------------


def _search_variables(state: SearchState, first: int = PAGE_SIZE) -> dict[str, Any]:
    return {
        "query": state.q,
        "filter": state.filter_input(),
        "facets": list(FACETS),
        "first": first,
        "after": state.after,
        "sort": state.sort,
        "histogram": state.interval,
    }


async def _search(request: Request, state: SearchState, first: int = PAGE_SIZE) -> dict[str, Any]:
    variables = _search_variables(state, first)
    data = await client.graphql(request, _token(request), queries.SEARCH, variables)
    return data["search"]


def _notebook_response(text: str, name: str) -> Response:
    headers = SECURITY_HEADERS | {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(text, media_type="application/x-ipynb+json", headers=headers)


@router.get("/search/notebook.ipynb")
async def search_notebook(request: Request) -> Response:
    """The search as a notebook that runs the same query with the reader's own client."""
    state = SearchState.from_params(request.query_params)
    if not _token(request):
        raise client.SignInRequired
    # The query runs once here first: a bad one is the error page (400), as on the search
    # page, not a notebook that fails when run.
    await _search(request, state, first=1)
    link = _base(request) + search_url(state)
    text = notebook.search_notebook(_base(request), _search_variables(state), link)
    return _notebook_response(text, "failcat-search.ipynb")


@router.get("/search")
async def search_page(request: Request) -> Response:
    state = SearchState.from_params(request.query_params)
    error = None
    result = None
    try:
        result = await _search(request, state)
    except client.ApiError as exc:
        if exc.code != "BAD_USER_INPUT":
            raise  # the error page (mount_ui's handler)
        error = exc
    facets = _facet_view(state, result)
    histogram = None
    if result is not None:
        histogram = charts.stacked_bars(
            {"": result["histogram"]},
            state.interval,
            f"Cases per {state.interval}",
            link=lambda _name, bucket: search_url(
                state.with_(q=f"{state.q} {bucket_query(bucket, state.interval)}".strip())
            ),
        )
    return _page(
        request,
        "search.html",
        status=400 if error else 200,
        state=state,
        result=result,
        error=error,
        facets=facets,
        histogram=histogram,
        sorts=SORTS,
        intervals=INTERVALS,
        page_size=PAGE_SIZE,
    )


def _facet_view(state: SearchState, result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each facet's buckets with their toggle link, selected ones first; a selected value is
    kept even when the API no longer counts it (so it can be unselected)."""
    by_field = {f["field"]: f["buckets"] for f in (result or {}).get("facets", [])}
    out = []
    for name in FACETS:
        buckets = list(by_field.get(name, []))
        selected = state.selections.get(name, ())
        known = {b["value"] for b in buckets}
        buckets += [{"value": v, "count": 0} for v in selected if v not in known]
        if not buckets:
            continue
        # Selected values first: one picked from far down the list (or no longer counted)
        # stays in sight, to be seen and unselected.
        buckets.sort(key=lambda b: b["value"] not in selected)
        url = toggle_urls(state, name)
        out.append(
            {
                "field": name,
                "label": name.replace("_", " "),
                "buckets": [
                    {
                        "value": b["value"],
                        "count": b["count"],
                        "selected": b["value"] in selected,
                        "url": url(b["value"]),
                    }
                    for b in buckets
                ],
            }
        )
    return out


@router.get("/search/summary.md")
async def search_summary_md(request: Request) -> Response:
    state = SearchState.from_params(request.query_params)
    result = await _search(request, state)
    link = _base(request) + search_url(state)
    text = summary.search_markdown(state, result, _base(request), link)
    return PlainTextResponse(text, media_type="text/markdown", headers=SECURITY_HEADERS)


@router.get("/search/summary.html")
async def search_summary_html(request: Request) -> Response:
    state = SearchState.from_params(request.query_params)
    result = await _search(request, state)
    return templates.TemplateResponse(
        request,
        "summary_search.html",
        {"state": state, "result": result, "base": _base(request), "link": search_url(state)},
        headers=SUMMARY_HEADERS,
    )


# ---- a case ------------------------------------------------------------------------------------


async def _case(request: Request, case_id: str) -> dict[str, Any]:
    data = await client.graphql(request, _token(request), queries.CASE, {"id": case_id})
    return data["case"]


@router.get("/cases/{case_id}")
async def case_page(request: Request, case_id: str) -> Response:
    case = await _case(request, case_id)
    revisions = [
        rev | {"rows": views.change_rows(rev.get("changes") or {})}
        for rev in reversed(case["revisions"])
    ]
    annotations, annotations_hidden = None, False
    try:
        found = await client.graphql(request, _token(request), queries.ANNOTATIONS, {"id": case_id})
        annotations = found["case"]["annotations"]
    except client.ApiError as exc:
        if exc.code != "FORBIDDEN":
            raise
        annotations_hidden = True  # blind annotation: theirs first, then the others'
    return _page(
        request,
        "case.html",
        case=case,
        revisions=revisions,
        annotations=annotations or [],
        agreement=views.agreement_rows(annotations or []),
        annotations_hidden=annotations_hidden,
    )


@router.get("/cases/{case_id}/replay")
async def replay(request: Request, case_id: str, version: str = "") -> Response:
    """One click: this case's suites against a chosen model version, through the evaluation
    runs recorded for that version. failcat holds no model code, so a suite no run of that
    version covers is answered with the exact command that runs and reports it."""
    case = await _case(request, case_id)
    chosen = version or (case["modelVersion"] or {}).get("version", "")
    data = await client.graphql(
        request,
        _token(request),
        queries.REPLAY,
        {"id": case_id, "model": case["model"]["name"], "version": chosen},
    )
    rows = views.replay_rows(data["case"], data["evaluationRuns"], chosen)
    versions = [v["version"] for v in data["case"]["model"]["versions"]]
    return _page(request, "replay.html", case=case, rows=rows, version=chosen, versions=versions)


@router.get("/cases/{case_id}/similar")
async def similar_cases(request: Request, case_id: str) -> Response:
    """The similar cases of a case: a fragment the case page's script puts in place (and a
    page of its own without the script)."""
    data = await client.graphql(request, _token(request), queries.SIMILAR, {"id": case_id})
    fragment = request.headers.get("x-fragment") == "1"
    name = "_similar.html" if fragment else "similar.html"
    return _page(request, name, case=data["case"])


@router.get("/cases/{case_id}/notebook.ipynb")
async def case_notebook(request: Request, case_id: str) -> Response:
    # A case the reader may not see is not found here either (the page's relations are not
    # needed: the notebook fetches the case itself).
    await client.graphql(request, _token(request), queries.CASE_SEEN, {"id": case_id})
    link = f"{_base(request)}/ui/cases/{quote(case_id)}"
    text = notebook.case_notebook(_base(request), case_id, link)
    return _notebook_response(text, f"failcat-case-{case_id}.ipynb")


@router.get("/cases/{case_id}/summary.md")
async def case_summary_md(request: Request, case_id: str) -> Response:
    case = await _case(request, case_id)
    text = summary.case_markdown(case, _base(request))
    return PlainTextResponse(text, media_type="text/markdown", headers=SECURITY_HEADERS)


@router.get("/cases/{case_id}/summary.html")
async def case_summary_html(request: Request, case_id: str) -> Response:
    case = await _case(request, case_id)
    return templates.TemplateResponse(
        request,
        "summary_case.html",
        {"case": case, "base": _base(request)},
        headers=SUMMARY_HEADERS,
    )


# ---- review --------------------------------------------------------------------------------------


@router.get("/review")
async def review_page(request: Request) -> Response:
    """The team's review rituals: each board's open (or next) session and its agenda, the
    cases waiting for a reviewer, and agreement per field of the shared taxonomy. Three API
    requests whatever the data size; the queue is for reviewers only."""
    token = _token(request)
    data = await client.graphql(request, token, queries.REVIEW)
    taxonomy = data["annotationTaxonomy"]
    fields = [
        f["name"]
        for f in taxonomy["fields"]
        if f["type"] in queries.AGREEMENT_TYPES and not f["subfields"]
    ][: queries.MAX_AGREEMENT_FIELDS]
    agreement = []
    if fields:
        found = await client.graphql(
            request, token, queries.agreement_query(taxonomy["name"], fields)
        )
        agreement = [found[f"f{i}"] for i in range(len(fields))]
    queue = None
    try:
        queue = (await client.graphql(request, token, queries.REVIEW_QUEUE))["annotationQueue"]
    except client.ApiError as exc:
        if exc.code != "FORBIDDEN":
            raise
    boards = [
        board | {"current": views.current_session(board["sessions"])}
        for board in data["reviewBoards"]
    ]
    return _page(
        request,
        "review.html",
        boards=boards,
        agreement=agreement,
        taxonomy=taxonomy["name"],
        queue=queue,
    )


# ---- dashboard ---------------------------------------------------------------------------------


def dashboard_variables(state: SearchState) -> dict[str, Any]:
    """The variables of queries.DASHBOARD for a page's state (benchmarks/ui.py sends the same)."""
    variables: dict[str, Any] = {
        "query": state.q,
        "filter": state.filter_input(),
        "interval": state.interval,
    }
    # A severity already selected narrows the series: the other severities are left out
    # (and not asked for).
    wanted = state.selections.get("severity") or queries.SEVERITIES
    for severity in queries.SEVERITIES:
        variables[severity.lower()] = (state.filter_input() or {}) | {"severity": [severity]}
        variables[f"with{severity}"] = severity in wanted
    # Events of the one model selected (or of every model): drawn on the series.
    models = state.selections.get("model") or ()
    variables["events"] = {"model": models[0]} if len(models) == 1 else None
    variables["since"] = (datetime.now(UTC) - REMEDIATION_TREND).isoformat()
    return variables


@router.get("/")
async def dashboard(request: Request) -> Response:
    state = SearchState.from_params(request.query_params)
    variables = dashboard_variables(state)
    error = None
    data: dict[str, Any] | None = None
    try:
        data = await client.graphql(request, _token(request), queries.DASHBOARD, variables)
    except client.ApiError as exc:
        if exc.code != "BAD_USER_INPUT":
            raise  # the error page (mount_ui's handler)
        error = exc
    heatmap = series = None
    drift: tuple[str | None, str | None, list[charts.Drift]] = (None, None, [])
    severity_counts: list[dict[str, Any]] = []
    if data is not None:
        # The facet's buckets come most cases first; a reader scans severities worst first.
        facets = data["overview"]["facets"]
        severity_counts = sorted(
            facets[0]["buckets"] if facets else [],
            key=lambda b: (b["value"] not in queries.SEVERITIES, b["value"]),
        )
        cell_url = cell_urls(state, "model_version", "failure_mode")
        heatmap = charts.heatmap(data["overview"]["heatmap"], cell_url)
        drift = charts.drift(
            data["overview"]["heatmap"],
            request.query_params.get("from") or None,
            request.query_params.get("to") or None,
        )

        def bar_url(severity: str, _bucket: str) -> str:
            return search_url(state.toggled("severity", severity)) if severity else ""

        series = charts.stacked_bars(
            {
                s: data[s.lower()]["histogram"] if s.lower() in data else []
                for s in queries.SEVERITIES
            },
            state.interval,
            f"Cases per {state.interval} by severity",
            link=bar_url,
            events=data["events"]["nodes"],
        )
    return _page(
        request,
        "dashboard.html",
        status=400 if error else 200,
        state=state,
        data=data,
        error=error,
        heatmap=heatmap,
        series=series,
        drift_from=drift[0],
        drift_to=drift[1],
        drift=drift[2],
        severities=queries.SEVERITIES,
        severity_counts=severity_counts,
        colours=charts.SEVERITY_COLOURS,
        intervals=INTERVALS,
    )
