"""Auth tables: clients, users, signing keys, and the records behind every issued credential.

Secrets never reach the database in the clear: client secrets, authorization codes, refresh
tokens and device codes are stored as SHA-256 digests (they are high-entropy random strings,
so a fast digest is as strong as a slow one), user passwords as argon2id hashes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

from shared.db import JSONType, UTCDateTime, utcnow


class OAuthClient(SQLModel, table=True):
    """A registered OAuth client: a service (confidential) or a CLI/native app (public)."""

    __tablename__ = "oauth_client"
    client_id: str = Field(primary_key=True, max_length=64)
    # None for public clients (token_endpoint_auth_method "none"), which must use PKCE.
    secret_hash: str | None = Field(default=None, max_length=200)
    name: str = Field(max_length=200)
    scopes: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    team: str | None = Field(default=None, max_length=120)
    clearance: str = Field(default="internal", max_length=20)
    grant_types: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    redirect_uris: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    token_endpoint_auth_method: str = Field(default="client_secret_basic", max_length=40)
    disabled: bool = False
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))


class AuthUser(SQLModel, table=True):
    """A local account for people signing in through the authorization code or device flow."""

    __tablename__ = "auth_user"
    id: str = Field(primary_key=True, max_length=36)
    username: str = Field(max_length=120, unique=True)
    password_hash: str = Field(max_length=200)
    roles: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    team: str | None = Field(default=None, max_length=120)
    clearance: str = Field(default="internal", max_length=20)
    disabled: bool = False
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class SigningKey(SQLModel, table=True):
    """A JWS signing key. Public halves are here for every process to publish and verify with;
    the private half lives in $FAILCAT_DATA_DIR/keys (embedded) or in `private_jwk` (Postgres,
    where several stateless processes must sign with the same key)."""

    __tablename__ = "auth_signing_key"
    kid: str = Field(primary_key=True, max_length=64)
    alg: str = Field(max_length=16)
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    private_jwk: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    # Set on rotation: the key stops signing at once and stops being published (and accepted)
    # after this instant, once every token it signed has expired.
    retire_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class AuthorizationCode(SQLModel, table=True):
    __tablename__ = "oauth_authorization_code"
    id: str = Field(primary_key=True, max_length=36)
    code_hash: str = Field(max_length=64, unique=True)
    client_id: str = Field(max_length=64)
    user_id: str = Field(max_length=36)
    redirect_uri: str = Field(max_length=2000)
    scope: str = Field(max_length=2000)
    code_challenge: str = Field(max_length=128)
    code_challenge_method: str = Field(max_length=10)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # Kept after use so that a replayed code is recognised and its tokens revoked (RFC 6749
    # section 4.1.2).
    used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class DeviceCode(SQLModel, table=True):
    """RFC 8628 device authorization: the CLI polls with device_code, a person approves the
    user_code in a browser."""

    __tablename__ = "oauth_device_code"
    id: str = Field(primary_key=True, max_length=36)
    device_code_hash: str = Field(max_length=64, unique=True)
    user_code: str = Field(max_length=20, unique=True)
    client_id: str = Field(max_length=64)
    scope: str = Field(max_length=2000)
    interval_s: int = 5
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_polled_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    user_id: str | None = Field(default=None, max_length=36)
    # None while pending, then "approved" or "denied".
    decision: str | None = Field(default=None, max_length=10)
    consumed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


class RefreshToken(SQLModel, table=True):
    __tablename__ = "oauth_refresh_token"
    __table_args__ = (Index("ix_oauth_refresh_token_grant_id", "grant_id"),)
    id: str = Field(primary_key=True, max_length=36)
    token_hash: str = Field(max_length=64, unique=True)
    client_id: str = Field(max_length=64)
    user_id: str = Field(max_length=36)
    scope: str = Field(max_length=2000)
    # The authorization (code or device code) the token descends from: rotation keeps it, so a
    # replayed refresh token can revoke the whole family.
    grant_id: str = Field(max_length=36)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


class IssuedAccessToken(SQLModel, table=True):
    """One row per JWT issued: what introspection and revocation work on. The token itself is
    not stored; resource servers learn revoked jtis by polling `revoked_at`."""

    __tablename__ = "oauth_access_token"
    __table_args__ = (
        Index("ix_oauth_access_token_revoked_at", "revoked_at"),
        Index("ix_oauth_access_token_grant_id", "grant_id"),
        Index("ix_oauth_access_token_client_id", "client_id"),
    )
    jti: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(max_length=64)
    subject: str = Field(max_length=120)
    user_id: str | None = Field(default=None, max_length=36)
    scope: str = Field(max_length=2000)
    grant_id: str | None = Field(default=None, max_length=36)
    issued_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
