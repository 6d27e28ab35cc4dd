"""OpenAPI documentation of the OAuth routes: their form bodies (RFC 6749, 7009, 7662, 8628).

The routes hand the raw form to authlib, so FastAPI cannot see their fields; these models only
describe them, so /openapi.json tells a client (and schemathesis) what to send.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from shared.web import inline_schema

FORM = "application/x-www-form-urlencoded"


class TokenForm(BaseModel):
    grant_type: Literal[
        "client_credentials",
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
    ]
    scope: str | None = None
    code: str | None = None
    redirect_uri: str | None = None
    code_verifier: str | None = None
    refresh_token: str | None = None
    device_code: str | None = None
    client_id: str | None = None
    client_secret: str | None = None


class TokenInspection(BaseModel):
    """Introspection (RFC 7662) and revocation (RFC 7009) take the same form."""

    token: str
    token_type_hint: Literal["access_token", "refresh_token"] | None = None


class DeviceAuthorizationForm(BaseModel):
    client_id: str | None = None
    scope: str | None = None


class SignInForm(BaseModel):
    """The sign-in page's form: the protocol fields of the authorization request come back
    as hidden fields."""

    csrf_token: str
    decision: Literal["allow", "deny"]
    username: str | None = None
    password: str | None = None
    response_type: str | None = None
    client_id: str | None = None
    redirect_uri: str | None = None
    scope: str | None = None
    state: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None


class DeviceApprovalForm(BaseModel):
    csrf_token: str
    user_code: str
    decision: Literal["allow", "deny"]
    username: str | None = None
    password: str | None = None


def form_body(model: type[BaseModel], example: dict[str, Any] | None = None) -> dict[str, Any]:
    """`openapi_extra=` of a route that reads the form `model` describes."""
    content: dict[str, Any] = {"schema": inline_schema(model)}
    if example is not None:
        content["example"] = example
    return {"requestBody": {"required": True, "content": {FORM: content}}}


TOKEN = form_body(TokenForm, {"grant_type": "client_credentials", "scope": "cases:read"})
INSPECTION = form_body(TokenInspection, {"token": "eyJ0eXAiOiJhdCtqd3Qi..."})
DEVICE_AUTHORIZATION = form_body(DeviceAuthorizationForm, {"client_id": "cli", "scope": ""})
SIGN_IN = form_body(SignInForm)
DEVICE_APPROVAL = form_body(DeviceApprovalForm)
