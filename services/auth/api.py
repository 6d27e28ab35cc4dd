"""HTTP routes of the authorization server (RFC 6749, 7636, 7009, 7662, 8414, 8628, 9068)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException

from services.auth import openapi as doc
from services.auth import pages, protocol
from services.auth.credentials import new_secret
from services.auth.grants import ClientView, UserView, shown
from services.auth.repository import AuthRepository
from services.auth.server import (
    FailcatAuthorizationServer,
    OAuthResponse,
    StarletteOAuth2Request,
    metadata,
)
from services.auth.service import AuthService
from shared.audit import Actor, audit
from shared.db import utcnow
from shared.web import db_session

router = APIRouter(tags=["oauth"])

# scope="function": the transaction commits before the response leaves, so a client that
# receives a token can introspect or revoke it at once, and a failed commit is never reported
# as success. (The default "request" scope would commit after the response is sent.)
Session = Depends(db_session, scope="function")

# Errors that mean "wrong credentials": what a guesser produces, so what gets rate limited.
GUESSING_ERRORS = frozenset({"invalid_client", "invalid_grant"})
CSRF_COOKIE = "failcat_csrf"


def _auth(request: Request) -> AuthService:
    return request.app.state.auth


FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


async def _form(request: Request) -> list[tuple[str, str]]:
    """The body's parameters (RFC 6749 section 3.2: a form). InvalidRequestError when the body
    is something else or cannot be read (Starlette's own refusal is a bare {"detail"}, not an
    OAuth error). Kept on request.state, so the token audit does not read the body again."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind and kind not in FORM_TYPES:
        raise InvalidRequestError(
            f"send the parameters as application/x-www-form-urlencoded, not {shown(kind)}"
        )
    try:
        body = await request.form()
    except HTTPException as exc:  # a field over 1 MB, over 1000 fields, a broken multipart
        raise InvalidRequestError(f"unreadable form body: {shown(str(exc.detail))}") from None
    form = [(k, v) for k, v in body.multi_items() if isinstance(v, str)]
    request.state.oauth_form = form
    return form


def _refusal(error: OAuth2Error) -> Response:
    status, body, headers = error()
    return _to_response(OAuthResponse(status, body, headers))


async def _oauth_request(request: Request, service: AuthService) -> StarletteOAuth2Request:
    form: list[tuple[str, str]] = []
    if request.method == "POST":
        form = await _form(request)
    # The issuer, not the Host header, names the endpoint: behind a TLS-terminating proxy the
    # app sees http, and Host is the caller's to choose.
    uri = f"{service.settings.issuer}{request.url.path}"
    if request.url.query:
        uri = f"{uri}?{request.url.query}"
    return StarletteOAuth2Request(
        request.method, uri, request.headers, list(request.query_params.multi_items()), form
    )


def _to_response(result: OAuthResponse) -> Response:
    headers = {k: v for k, v in result.headers if k.lower() != "content-type"}
    if isinstance(result.body, dict):
        return JSONResponse(result.body, status_code=result.status, headers=headers)
    return Response(result.body or None, status_code=result.status, headers=headers)


def _basic_client_id(request: Request) -> str | None:
    """The client id of Basic credentials; None when there are none or they are not UTF-8
    (authlib's parser raises on those: `_guarded` refuses them before it runs)."""
    try:
        return extract_basic_authorization(request.headers)[0]
    except UnicodeDecodeError:
        return None


def _malformed_basic(request: Request) -> bool:
    try:
        extract_basic_authorization(request.headers)
    except UnicodeDecodeError:
        return True
    return False


def _limit_keys(request: Request, oauth_request: StarletteOAuth2Request) -> tuple[str, str | None]:
    ip = request.client.host if request.client else "unknown"
    client_id = _basic_client_id(request) or oauth_request.payload.data.get("client_id")
    # A client's failures count per address: instances somewhere still holding a rotated
    # secret must not lock out the ones that have the new secret. The secrets are 256 bits,
    # so guessing one from many addresses gains nothing; each address has its own budget.
    return f"ip:{ip}", f"client:{client_id}@{ip}" if client_id else None


def _too_many(retry_after: int) -> JSONResponse:
    return JSONResponse(
        {
            "error": "temporarily_unavailable",
            "error_description": f"too many failed requests; retry after {retry_after} s",
        },
        status_code=429,
        headers={"Retry-After": str(retry_after), "Cache-Control": "no-store"},
    )


async def _guarded(
    request: Request,
    session: AsyncSession,
    step: Callable[[FailcatAuthorizationServer, StarletteOAuth2Request], OAuthResponse | None],
) -> Response:
    """Run a client-authenticated endpoint behind the failure rate limit."""
    if _malformed_basic(request):
        return JSONResponse(
            {"error": "invalid_client", "error_description": "Basic credentials are not UTF-8"},
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="failcat"', "Cache-Control": "no-store"},
        )
    service = _auth(request)
    try:
        oauth_request = await _oauth_request(request, service)
    except InvalidRequestError as error:
        return _refusal(error)
    ip_key, client_key = _limit_keys(request, oauth_request)
    wait = max(
        service.ip_limiter.retry_after([ip_key]),
        service.limiter.retry_after([client_key] if client_key else []),
    )
    if wait:
        return _too_many(wait)
    result = await service.run_protocol(session, lambda server: step(server, oauth_request))
    assert result is not None
    if result.error in GUESSING_ERRORS:
        service.ip_limiter.record_failure([ip_key])
        if client_key:
            service.limiter.record_failure([client_key])
    return _to_response(result)


# ---- discovery -----------------------------------------------------------------------------


@router.get(protocol.METADATA)
async def authorization_server_metadata(request: Request) -> JSONResponse:
    return JSONResponse(metadata(_auth(request).settings), headers={"Cache-Control": "max-age=300"})


@router.get(protocol.JWKS)
async def jwks(request: Request) -> JSONResponse:
    # Short cache: after a rotation, outside verifiers see the new key within a minute, and
    # the new key signs only tokens issued after rotation.
    return JSONResponse(_auth(request).jwks(), headers={"Cache-Control": "public, max-age=60"})


# ---- token, introspection, revocation, device authorization ---------------------------------


@router.post(protocol.TOKEN, openapi_extra=doc.TOKEN)
async def token(request: Request, session: AsyncSession = Session) -> Response:
    response = await _guarded(request, session, lambda s, r: s.create_token_response(r))
    await _audit_token(request, session, response)
    return response


async def _audit_token(request: Request, session: AsyncSession, response: Response) -> None:
    """Issued or refused, with the grant type and client (never a secret or a code). The
    session commits either way (a refusal is an answer, not an error), before the response."""
    form = dict(getattr(request.state, "oauth_form", ()))  # what _form read, if it could
    client_id = _basic_client_id(request) or form.get("client_id")
    client = str(client_id) if client_id else None
    denied = response.status_code >= 400
    error = orjson.loads(response.body).get("error") if denied and response.body else None
    audit(
        session,
        Actor(subject=client, client=client),
        "auth.token",
        f"client:{client}" if client else None,
        outcome="denied" if denied else "ok",
        details={"grant_type": str(form.get("grant_type") or ""), "status": response.status_code}
        | ({"error": error} if error else {}),
    )


@router.post(protocol.INTROSPECT, openapi_extra=doc.INSPECTION)
async def introspect(request: Request, session: AsyncSession = Session) -> Response:
    return await _guarded(
        request, session, lambda s, r: s.create_endpoint_response("introspection", r)
    )


@router.post(protocol.REVOKE, openapi_extra=doc.INSPECTION)
async def revoke(request: Request, session: AsyncSession = Session) -> Response:
    return await _guarded(
        request, session, lambda s, r: s.create_endpoint_response("revocation", r)
    )


@router.post(protocol.DEVICE_AUTHORIZATION, openapi_extra=doc.DEVICE_AUTHORIZATION)
async def device_authorization(request: Request, session: AsyncSession = Session) -> Response:
    def step(server: FailcatAuthorizationServer, r: StarletteOAuth2Request) -> OAuthResponse:
        try:
            return server.create_endpoint_response("device_authorization", r)
        except OAuth2Error as error:  # authlib's device endpoint raises instead of answering
            return server.handle_error_response(r, error)

    return await _guarded(request, session, step)


# ---- authorization endpoint with its sign-in page -------------------------------------------


def _csrf(request: Request) -> str:
    return request.cookies.get(CSRF_COOKIE) or new_secret(24)


def _with_csrf_cookie(response: Response, request: Request, csrf: str) -> Response:
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        httponly=True,
        samesite="strict",
        secure=_auth(request).settings.issuer.startswith("https://"),
        path=protocol.PREFIX,
    )
    return response


def _csrf_ok(request: Request, form: dict[str, Any]) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    sent = form.get("csrf_token") or ""
    return bool(cookie) and hmac.compare_digest(cookie, sent)


def _authorization_error(error: OAuth2Error, issuer: str) -> Response:
    """Redirect only to a URI authlib validated for the client; otherwise show the error here
    (never bounce a browser to an unverified redirect_uri)."""
    if error.redirect_uri:
        params = [*error.get_body(), ("iss", issuer)]
        sep = "&" if "?" in error.redirect_uri else "?"
        return Response(
            status_code=302, headers={"Location": f"{error.redirect_uri}{sep}{urlencode(params)}"}
        )
    return pages.message_page(
        "Authorization request refused",
        f"{error.error}: {error.description or ''}",
        status=400,
    )


PROTOCOL_FIELDS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)


@router.get(protocol.AUTHORIZE)
async def authorize_page(request: Request, session: AsyncSession = Session) -> Response:
    service = _auth(request)
    oauth_request = await _oauth_request(request, service)
    try:
        grant = await service.run_protocol(session, lambda s: s.get_consent_grant(oauth_request))
    except OAuth2Error as error:
        return _authorization_error(error, service.settings.issuer)
    client: ClientView = grant.client
    csrf = _csrf(request)
    params = [(k, v) for k, v in oauth_request.payload.data.items() if k in PROTOCOL_FIELDS]
    page = pages.login_page(client.row.name, scope_to_list(grant.request.scope) or [], params, csrf)
    return _with_csrf_cookie(page, request, csrf)


@router.post(protocol.AUTHORIZE, openapi_extra=doc.SIGN_IN)
async def authorize_submit(request: Request, session: AsyncSession = Session) -> Response:
    service = _auth(request)
    try:
        oauth_request = await _oauth_request(request, service)
    except InvalidRequestError as error:
        return pages.message_page("Sign-in request refused", error.description, status=400)
    form = oauth_request.form
    if not _csrf_ok(request, form):
        return pages.message_page("Session expired", "Reload the sign-in page and try again.", 403)
    try:
        grant = await service.run_protocol(session, lambda s: s.get_consent_grant(oauth_request))
    except OAuth2Error as error:
        return _authorization_error(error, service.settings.issuer)

    user: UserView | None = None
    if form.get("decision") == "allow":
        username = form.get("username", "")
        user_key = f"user:{username}"
        ip_key = f"ip:{request.client.host if request.client else 'unknown'}"
        wait = max(
            service.limiter.retry_after([user_key]), service.ip_limiter.retry_after([ip_key])
        )
        if wait:
            return pages.message_page("Too many attempts", f"Try again in {wait} s.", 429)
        row = await service.authenticate_user(session, username, form.get("password", ""))
        if row is None:
            service.limiter.record_failure([user_key])
            service.ip_limiter.record_failure([ip_key])
            csrf = _csrf(request)
            params = [(k, v) for k, v in form.items() if k in PROTOCOL_FIELDS]
            page = pages.login_page(
                grant.client.row.name,
                scope_to_list(grant.request.scope) or [],
                params,
                csrf,
                error="Wrong username or password.",
                status=401,
            )
            return _with_csrf_cookie(page, request, csrf)
        user = UserView.of(row)

    def step(server: FailcatAuthorizationServer) -> OAuthResponse:
        fresh = server.get_consent_grant(oauth_request, end_user=user)
        return server.create_authorization_response(oauth_request, grant_user=user, grant=fresh)

    try:
        result = await service.run_protocol(session, step)
    except OAuth2Error as error:
        return _authorization_error(error, service.settings.issuer)
    return _to_response(result)


# ---- device verification page (RFC 8628 section 3.3) ----------------------------------------


@router.get(protocol.DEVICE)
async def device_page(request: Request, user_code: str = "") -> Response:
    csrf = _csrf(request)
    return _with_csrf_cookie(pages.device_page(user_code, csrf), request, csrf)


@router.post(protocol.DEVICE, openapi_extra=doc.DEVICE_APPROVAL)
async def device_submit(request: Request, session: AsyncSession = Session) -> Response:
    service = _auth(request)
    try:
        form = dict(await _form(request))
    except InvalidRequestError as error:
        return pages.message_page("Approval refused", error.description, status=400)
    csrf = _csrf(request)
    user_code = form.get("user_code", "").strip().upper()
    if not _csrf_ok(request, form):
        return pages.message_page("Session expired", "Reload the page and try again.", 403)

    def again(message: str, status: int) -> Response:
        page = pages.device_page(user_code, csrf, error=message, status=status)
        return _with_csrf_cookie(page, request, csrf)

    username = form.get("username", "")
    keys = [f"user:{username}"]
    ip_key = f"ip:{request.client.host if request.client else 'unknown'}"
    wait = max(service.limiter.retry_after(keys), service.ip_limiter.retry_after([ip_key]))
    if wait:
        return pages.message_page("Too many attempts", f"Try again in {wait} s.", 429)

    repo = AuthRepository(session)
    device = await repo.device_code_by_user_code(user_code)
    if device is None or device.decision is not None or device.expires_at <= utcnow():
        service.ip_limiter.record_failure([ip_key])  # user codes are short: guessing counts
        return again("Unknown or expired code.", 400)
    if form.get("decision") != "allow":
        device.decision = "denied"
        return pages.message_page("Denied", "The device was not given access.")
    row = await service.authenticate_user(session, username, form.get("password", ""))
    if row is None:
        service.limiter.record_failure(keys)
        service.ip_limiter.record_failure([ip_key])
        return again("Wrong username or password.", 401)
    client = await repo.client(device.client_id)
    user = UserView.of(row)
    asked = set(device.scope.split())
    allowed = set(client.scopes) if client is not None and not client.disabled else set()
    if asked and not asked <= user.scopes:
        return again("You do not hold every scope this device asks for.", 403)
    granted = (asked or allowed) & user.scopes
    if not granted:
        return again("You hold none of the scopes this device may have.", 403)
    device.scope = " ".join(sorted(granted))
    device.user_id = row.id
    device.decision = "approved"
    await session.flush()
    return pages.message_page(
        "Device approved", "You can close this page and return to your terminal."
    )
