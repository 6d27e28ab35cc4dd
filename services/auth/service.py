"""The auth service: the only entry point other packages call.

It owns the in-memory state that makes token checks local and fast (the key ring and the set of
revoked jtis), keeps both fresh with one background poll, and offers the client, user and key
operations the CLI and the GraphQL admin surface call. The OAuth protocol itself is in
`server.py`/`grants.py`; the HTTP routes in `api.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.auth import protocol
from services.auth.credentials import (
    digest,
    hash_password,
    new_client_id,
    new_secret,
    password_matches,
)
from services.auth.keys import KeyRing, KeyStore
from services.auth.models import AuthUser, OAuthClient
from services.auth.ratelimit import FailureLimiter
from services.auth.repository import AuthRepository
from services.auth.schemas import ClientOut, UserOut
from services.auth.server import FailcatAuthorizationServer
from services.auth.tokens import AccessTokenGenerator, TokenValidator
from shared.audit import Actor, audit
from shared.db import Database, utcnow
from shared.errors import BadUserInput, FieldError, NotFound
from shared.ids import new_id
from shared.security import ALL_SCOPES, ROLES, Principal, Scope, Sensitivity
from shared.settings import Settings

log = logging.getLogger("failcat.auth")

T = TypeVar("T")

DEFAULT_GRANT_TYPES = ("client_credentials",)
# Revocations older than this are re-read on every poll, covering transactions that committed
# late (their revoked_at is stamped before commit) and clock skew between processes.
REVOCATION_OVERLAP = timedelta(seconds=30)
# An unknown kid triggers at most one key refresh per this many seconds (a token with a random
# kid must not become a way to hammer the database).
UNKNOWN_KID_REFRESH_S = 1.0
# pg_advisory_xact_lock key serialising the bootstrap client's creation ("fcboot" in hex).
BOOTSTRAP_LOCK_KEY = 0x6663626F6F74


class RevocationSet:
    """jti -> expiry (epoch s) of revoked, unexpired tokens."""

    def __init__(self) -> None:
        self.jtis: dict[str, float] = {}

    def add(self, revoked: Iterable[tuple[str, datetime]]) -> None:
        for jti, expires_at in revoked:
            self.jtis[jti] = expires_at.timestamp()

    def prune(self, now: float) -> None:
        # Expired tokens fail on `exp` anyway; dropping them keeps the set small.
        self.jtis = {j: e for j, e in self.jtis.items() if e > now}


class AuthService:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.key_store = KeyStore(settings, db.dialect)
        self._ring: KeyRing | None = None
        self.revocations = RevocationSet()
        # First poll reads every revoked, unexpired token.
        self._revocations_seen_at = datetime(2000, 1, 1, tzinfo=UTC)
        self.token_generator = AccessTokenGenerator(
            settings.issuer, settings.audience, settings.access_token_ttl_s, self.ring
        )
        self.validator = TokenValidator(
            settings.issuer,
            settings.audience,
            self.ring,
            lambda: self.revocations.jtis,
            self._unknown_kid,
        )
        # Failures at the token, introspection, revocation and sign-in endpoints: per client
        # id or username (tight), and per source address (looser: NAT puts many behind one).
        self.limiter = FailureLimiter(max_failures=10, window_s=60)
        self.ip_limiter = FailureLimiter(max_failures=100, window_s=60)
        self._poll_task: asyncio.Task | None = None
        self._refresh_task: asyncio.Task | None = None
        self._last_kid_refresh = 0.0

    def still_valid(self, principal: Principal) -> bool:
        """For long-lived connections (subscriptions): the token has neither expired nor been
        revoked since it was checked."""
        if principal.expires_at is not None and principal.expires_at <= time.time():
            return False
        return principal.jti is None or principal.jti not in self.revocations.jtis

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def start(cls, settings: Settings, db: Database) -> AuthService:
        service = cls(settings, db)
        async with db.transaction() as session:
            service._ring = await service.key_store.load(session)
        await service.refresh_revocations()
        service._poll_task = asyncio.create_task(service._poll(), name="auth-revocation-poll")
        return service

    async def close(self) -> None:
        for task in (self._poll_task, self._refresh_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def ring(self) -> KeyRing:
        assert self._ring is not None, "AuthService.start() was not awaited"
        return self._ring

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.revocation_poll_s)
            try:
                await self.refresh_revocations()
                await self.refresh_keys()
            except asyncio.CancelledError:
                raise
            except Exception:  # the poll must outlive a database blip
                log.exception("auth poll failed; keeping the last known keys and revocations")

    async def refresh_revocations(self) -> None:
        started = utcnow()
        async with self.db.transaction() as session:
            revoked = await AuthRepository(session).revoked_since(
                self._revocations_seen_at - REVOCATION_OVERLAP
            )
        self.revocations.add(revoked)
        self.revocations.prune(time.time())
        self._revocations_seen_at = started

    async def refresh_keys(self) -> None:
        """Swap in a new ring when keys were added or retired (by `keys rotate` anywhere)."""
        async with self.db.transaction() as session:
            if await self.key_store.fingerprint(session) != self.ring().fingerprint:
                self._ring = await self.key_store.load(session)

    def _unknown_kid(self) -> None:
        now = time.monotonic()
        if now - self._last_kid_refresh < UNKNOWN_KID_REFRESH_S:
            return
        self._last_kid_refresh = now
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to schedule on
            loop = asyncio.get_running_loop()
            self._refresh_task = loop.create_task(self.refresh_keys(), name="auth-key-refresh")

    # ---- resource-server side --------------------------------------------------------------

    def authenticate(self, authorization_header: str | None) -> Principal:
        """Validate a bearer token locally (no I/O); raise Unauthenticated with an RFC 6750
        WWW-Authenticate value otherwise."""
        return self.validator.authenticate(authorization_header)

    def jwks(self) -> dict[str, Any]:
        return self.ring().jwks

    # ---- the OAuth protocol ----------------------------------------------------------------

    async def run_protocol(
        self, session: AsyncSession, step: Callable[[FailcatAuthorizationServer], T]
    ) -> T:
        """Run an authlib step with a sync session bound to this request's transaction.

        `run_sync` executes `step` in a greenlet whose database calls are awaited on the event
        loop: authlib keeps its synchronous hooks and the loop is never blocked on I/O."""

        def call(sync_session: Session) -> T:
            return step(FailcatAuthorizationServer(self, sync_session))

        return await session.run_sync(call)

    async def authenticate_user(
        self, session: AsyncSession, username: str, password: str
    ) -> AuthUser | None:
        user = await AuthRepository(session).user_by_name(username)
        stored = user.password_hash if user is not None and not user.disabled else None
        # argon2 is deliberately slow: off the event loop.
        ok = await asyncio.to_thread(password_matches, password, stored)
        return user if ok else None

    # ---- clients ---------------------------------------------------------------------------

    async def ensure_bootstrap_client(self) -> dict | None:
        """On a fresh install, an admin client to create everything else with; its secret is
        written once to $FAILCAT_DATA_DIR/bootstrap-client.json (0600)."""
        async with self.db.transaction() as session:
            if self.db.dialect == "postgresql":
                # Several processes starting at once on a fresh database: one creates the
                # client, the others wait here and then see it (the lock ends with the commit).
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": BOOTSTRAP_LOCK_KEY}
                )
            if await AuthRepository(session).count_clients() > 0:
                return None
            client, secret = await self.create_client(
                session,
                name="bootstrap-admin",
                scopes=sorted(s.value for s in ALL_SCOPES),
                clearance=Sensitivity.RESTRICTED.value,
            )
        creds = {"client_id": client.client_id, "client_secret": secret}
        path = Path(self.settings.data_dir) / "bootstrap-client.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(creds, fh)
        log.info("created bootstrap admin client %s (secret in %s)", client.client_id, path)
        return creds

    async def create_client(
        self,
        session: AsyncSession,
        *,
        name: str,
        scopes: Iterable[str] | str,
        team: str | None = None,
        clearance: str = "internal",
        grant_types: Sequence[str] = DEFAULT_GRANT_TYPES,
        redirect_uris: Sequence[str] = (),
        public: bool = False,
        client_id: str | None = None,
        actor: Principal | Actor | str = "system",
    ) -> tuple[ClientOut, str | None]:
        """Register a client; returns it and its secret (None for a public client). The secret
        is shown only here: only its digest is stored. `client_id` names a built-in client
        (random otherwise)."""
        scope_list = _valid_scopes(scopes)
        grants = _valid_grant_types(grant_types, public)
        uris = _valid_redirect_uris(redirect_uris, grants)
        name = _valid_label("name", name, 200)
        team = _valid_team(team)
        secret = None if public else new_secret()
        row = OAuthClient(
            client_id=client_id or new_client_id(),
            secret_hash=digest(secret) if secret else None,
            name=name,
            scopes=scope_list,
            team=team,
            clearance=_valid_clearance(clearance),
            grant_types=grants,
            redirect_uris=uris,
            token_endpoint_auth_method="none" if public else "client_secret_basic",
        )
        await AuthRepository(session).add(row)
        audit(
            session,
            actor,
            "auth.client.create",
            f"client:{row.client_id}",
            details={"scopes": scope_list, "team": row.team, "clearance": row.clearance},
        )
        return ClientOut.of(row), secret

    async def ensure_public_client(self, client_id: str, name: str, redirect_uri: str) -> None:
        """A built-in public client with a fixed id (GraphiQL's): authorization code + PKCE and
        refresh tokens, back to `redirect_uri` only. Created on the first start; later starts
        keep its redirect URI to the current one and leave the rest (an operator who disabled
        it keeps it disabled). It may ask for every scope at any clearance: a person's token
        still gets only what their roles give, at the lower of the two clearances."""
        try:
            async with self.db.transaction() as session:
                row = await AuthRepository(session).client(client_id)
                if row is None:
                    await self.create_client(
                        session,
                        client_id=client_id,
                        name=name,
                        scopes=sorted(s.value for s in ALL_SCOPES),
                        clearance=Sensitivity.RESTRICTED.value,
                        grant_types=["authorization_code", "refresh_token"],
                        redirect_uris=[redirect_uri],
                        public=True,
                    )
                elif row.redirect_uris != [redirect_uri]:
                    row.redirect_uris = _valid_redirect_uris([redirect_uri], row.grant_types)
                    row.updated_at = utcnow()
        except IntegrityError:
            # Another process starting at the same moment registered it first.
            if not await self._client_exists(client_id):
                raise

    async def _client_exists(self, client_id: str) -> bool:
        async with self.db.transaction() as session:
            return await AuthRepository(session).client(client_id) is not None

    async def list_clients(self, session: AsyncSession) -> list[ClientOut]:
        return [ClientOut.of(r) for r in await AuthRepository(session).clients()]

    async def get_client(self, session: AsyncSession, client_id: str) -> ClientOut:
        return ClientOut.of(await self._client_row(session, client_id))

    async def rotate_client_secret(
        self, session: AsyncSession, client_id: str, actor: Principal | Actor | str = "system"
    ) -> tuple[ClientOut, str]:
        """A new secret replaces the old one at once; tokens already issued stay valid."""
        row = await self._client_row(session, client_id)
        if row.secret_hash is None:
            raise BadUserInput("a public client has no secret to rotate")
        secret = new_secret()
        row.secret_hash = digest(secret)
        row.updated_at = utcnow()
        await session.flush()
        audit(session, actor, "auth.client.rotate_secret", f"client:{client_id}")
        return ClientOut.of(row), secret

    async def disable_client(
        self, session: AsyncSession, client_id: str, actor: Principal | Actor | str = "system"
    ) -> ClientOut:
        """No new tokens, and every live token of the client revoked."""
        row = await self._client_row(session, client_id)
        row.disabled = True
        row.updated_at = utcnow()
        revoked = await AuthRepository(session).revoke_client_tokens(client_id)
        await session.flush()
        self.revocations.add(revoked)
        audit(
            session,
            actor,
            "auth.client.disable",
            f"client:{client_id}",
            details={"tokens_revoked": len(revoked)},
        )
        return ClientOut.of(row)

    async def _client_row(self, session: AsyncSession, client_id: str) -> OAuthClient:
        row = await AuthRepository(session).client(client_id)
        if row is None:
            raise NotFound(f"no client {client_id}")
        return row

    # ---- users -----------------------------------------------------------------------------

    async def create_user(
        self,
        session: AsyncSession,
        *,
        username: str,
        password: str,
        roles: Iterable[str],
        team: str | None = None,
        clearance: str = "internal",
        actor: Principal | Actor | str = "system",
    ) -> UserOut:
        role_list = sorted(set(roles))
        unknown = [r for r in role_list if r not in ROLES]
        if unknown or not role_list:
            raise BadUserInput(
                "unknown role" if unknown else "at least one role is required",
                [FieldError("roles", f"known roles: {', '.join(ROLES)}")],
            )
        if len(password) < 12:
            raise BadUserInput(
                "password too short", [FieldError("password", "at least 12 characters")]
            )
        username, team = _valid_label("username", username, 120), _valid_team(team)
        repo = AuthRepository(session)
        if await repo.user_by_name(username) is not None:
            raise BadUserInput("username taken", [FieldError("username", "already exists")])
        row = AuthUser(
            id=new_id(),
            username=username,
            password_hash=await asyncio.to_thread(hash_password, password),
            roles=role_list,
            team=team,
            clearance=_valid_clearance(clearance),
        )
        await repo.add(row)
        audit(
            session,
            actor,
            "auth.user.create",
            f"user:{row.id}",
            details={"roles": role_list, "team": row.team, "clearance": row.clearance},
        )
        return UserOut.of(row)

    async def list_users(self, session: AsyncSession) -> list[UserOut]:
        return [UserOut.of(r) for r in await AuthRepository(session).users()]

    async def disable_user(
        self, session: AsyncSession, username: str, actor: Principal | Actor | str = "system"
    ) -> UserOut:
        """The person can no longer sign in, and every token their sign-ins produced (access
        and refresh, through any client) is revoked: what someone who leaves must lose."""
        repo = AuthRepository(session)
        row = await repo.user_by_name(username) or await repo.user(username)
        if row is None:
            raise NotFound(f"no user {username}")
        row.disabled = True
        revoked = await repo.revoke_user_tokens(row.id)
        await session.flush()
        self.revocations.add(revoked)
        audit(
            session,
            actor,
            "auth.user.disable",
            f"user:{row.id}",
            details={"tokens_revoked": len(revoked)},
        )
        return UserOut.of(row)

    # ---- keys ------------------------------------------------------------------------------

    async def rotate_keys(
        self, session: AsyncSession, actor: Principal | Actor | str = "system"
    ) -> str:
        """New current key; old ones stay published until their tokens have expired."""
        row = await self.key_store.rotate(session)
        audit(session, actor, "auth.keys.rotate", f"key:{row.kid}")
        return row.kid


async def subjects_named(session: AsyncSession, names: Sequence[str]) -> dict[str, str]:
    """Name -> token subject, for the names that identify an enabled account (by id or
    username) or a client; a name that identifies nobody is absent."""
    return await AuthRepository(session).subjects_named(names)


async def display_names(session: AsyncSession, subjects: Sequence[str]) -> dict[str, str]:
    """Token subject -> the name people know it by (an account's username, a client's name);
    a subject that is neither (an imported record's source) is absent."""
    return await AuthRepository(session).display_names(subjects)


def _valid_label(field: str, value: str, limit: int) -> str:
    """A name people read and tokens carry: trimmed, not empty, printable, within the column."""
    value = value.strip()
    if not value or len(value) > limit or not value.isprintable():
        raise BadUserInput(
            f"invalid {field}",
            [FieldError(field, f"1 to {limit} printable characters")],
        )
    return value


def _valid_team(team: str | None) -> str | None:
    """None: a principal of no team, who sees every team's cases. An empty string is not
    that (it would silently grant every team): it is refused."""
    return None if team is None else _valid_label("team", team, 120)


def _valid_scopes(scopes: Iterable[str] | str) -> list[str]:
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    known = {s.value for s in Scope}
    unknown = [s for s in items if s not in known]
    if unknown or not items:
        raise BadUserInput(
            "unknown scope" if unknown else "at least one scope is required",
            [FieldError("scopes", f"unknown: {' '.join(unknown)}" if unknown else "empty")],
        )
    return sorted(set(items))


def _valid_clearance(clearance: str) -> str:
    try:
        return Sensitivity(clearance).value
    except ValueError:
        raise BadUserInput(
            "unknown clearance",
            [FieldError("clearance", f"one of {', '.join(s.value for s in Sensitivity)}")],
        ) from None


def _valid_grant_types(grant_types: Sequence[str] | str, public: bool) -> list[str]:
    items = grant_types.split() if isinstance(grant_types, str) else list(grant_types)
    unknown = [g for g in items if g not in protocol.GRANT_TYPES]
    if unknown or not items:
        raise BadUserInput(
            "unknown grant type", [FieldError("grant_types", " ".join(unknown) or "empty")]
        )
    if public and "client_credentials" in items:
        # Often not asked for: it is the default, so say what to give instead.
        others = " ".join(g for g in protocol.GRANT_TYPES if g != "client_credentials")
        raise BadUserInput(
            "a public client cannot use client_credentials (the default grant type)",
            [FieldError("grant_types", f"client_credentials needs a secret; one of: {others}")],
        )
    return sorted(set(items))


def _valid_redirect_uris(uris: Sequence[str], grants: list[str]) -> list[str]:
    from urllib.parse import urlsplit

    out = []
    for uri in uris:
        parts = urlsplit(uri)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if parts.fragment or not parts.netloc or parts.scheme not in ("https", "http"):
            raise BadUserInput("invalid redirect URI", [FieldError("redirect_uris", uri)])
        if parts.scheme == "http" and not loopback:
            raise BadUserInput(
                "redirect URIs must use https (http only for loopback)",
                [FieldError("redirect_uris", uri)],
            )
        out.append(uri)
    if "authorization_code" in grants and not out:
        raise BadUserInput(
            "authorization_code needs at least one redirect URI",
            [FieldError("redirect_uris", "empty")],
        )
    return out
