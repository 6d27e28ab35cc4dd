"""Sending firings: signed webhook POSTs by a background task, retried with exponential
backoff and jitter, dead-lettered after the policy's attempts, every attempt logged.

Ingestion never waits for a receiver: firings only queue rows (in the indexer's
transaction); this task sends them from its own transactions, holding no database
connection or lock while a request is in flight.

Signature (ESCALATION.md): `X-Failcat-Timestamp: <unix seconds>` and
`X-Failcat-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, the body being
the exact bytes sent. A receiver recomputes it and refuses a timestamp older than its
tolerance (5 minutes is usual), so a captured request cannot be replayed later.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import random
import socket
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import ValidationError

from services.catalog import service as catalog
from services.catalog.schemas import CasePatch, Link
from services.governance.escalation import service
from services.governance.escalation.repository import EscalationRepository
from services.governance.escalation.schemas import Action, DeliveryStatus
from shared.audit import audit
from shared.db import Database, utcnow
from shared.errors import Conflict, FailcatError
from shared.security import ALL_SCOPES, Principal, Sensitivity

log = logging.getLogger("failcat.escalation")

SIGNATURE_HEADER = "X-Failcat-Signature"
TIMESTAMP_HEADER = "X-Failcat-Timestamp"
# Who adds ticket links, in the case's revision history.
LINKER = Principal(
    subject="escalation",
    client_id="escalation",
    scopes=ALL_SCOPES,
    clearance=Sensitivity.RESTRICTED,
    name="escalation",
)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, tolerance_s: float = 300
) -> bool:
    """What a receiver does (ESCALATION.md; the tests do it too): a fresh timestamp and a
    signature over it and the body, compared in constant time."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard the sender tries. The delay before attempt k+1 is
    min(max_delay_s, base_delay_s * 2**(k-1)), of which a random half is dropped (equal
    jitter): retries of many deliveries spread out instead of arriving together."""

    max_attempts: int = 8
    base_delay_s: float = 5.0
    max_delay_s: float = 3600.0
    timeout_s: float = 10.0
    poll_s: float = 1.0
    batch: int = 50
    # How often `left_confirmed` rules look for cases left in confirmed.
    confirmed_check_s: float = 600.0

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        full = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempts - 1))
        return full / 2 + (rng or random).uniform(0, full / 2)


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: float
    ticket: str | None = None  # a ticket action's answer: the ticket's URL

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


NO_TICKET = (
    "no ticket link: the answer has no `ticket_url`, `url` or `ticket.url` that is an "
    "http(s) URL without spaces of at most 2000 characters"
)


def ticket_url_of(response: Any) -> str | None:
    """The ticket a ticket system answered with: `url`, `ticket_url` or `ticket.url`, if it
    is a URL a case's link may hold (anything else would be refused by the catalog when the
    link is added, after the delivery had stored it as the ticket)."""
    if not isinstance(response, dict):
        return None
    for value in (
        response.get("ticket_url"),
        response.get("url"),
        (response.get("ticket") or {}).get("url")
        if isinstance(response.get("ticket"), dict)
        else None,
    ):
        if isinstance(value, str) and _linkable(value):
            return value
    return None


def _linkable(url: str) -> bool:
    try:
        Link.model_validate({"kind": "ticket", "url": url})
    except ValidationError:
        return False
    return True


async def private_destination(url: str) -> str | None:
    """Why `url` must not be posted to, when its host is or resolves to an address that is
    not public (loopback, private, link-local, reserved): a rule must not make the server
    reach its own network's services. None when every address is public, or when the name
    does not resolve (the POST then fails and says so). A name that resolves differently
    between this check and the connection is not caught (ESCALATION.md, known limits)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return None
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if not address.is_global:
            return (
                f"refused: {host} is {address}, not a public address "
                "(FAILCAT_WEBHOOK_PRIVATE_DESTINATIONS allows it)"
            )
    return None


def _failure(exc: httpx.HTTPError, policy: DeliveryPolicy) -> str:
    """The delivery log's line for a request that got no answer. httpx's timeouts carry no
    message (the log read 'ReadTimeout: '): say what the wait was."""
    if isinstance(exc, httpx.TimeoutException):
        return f"{type(exc).__name__}: no answer within {policy.timeout_s:g} s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Dispatcher:
    """The background sender (the API process's, or `failcat worker`'s)."""

    def __init__(
        self,
        db: Database,
        search: Any = None,
        policy: DeliveryPolicy | None = None,
        client: httpx.AsyncClient | None = None,
        *,
        allow_private: bool = True,
    ) -> None:
        self.db = db
        self.allow_private = allow_private
        self.search = search
        self.policy = policy or DeliveryPolicy()
        self._client = client
        self._next_confirmed_check = 0.0
        self._wake = asyncio.Event()

    def with_policy(self, **changes: Any) -> DeliveryPolicy:
        self.policy = replace(self.policy, **changes)
        self._wake.set()
        return self.policy

    async def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # Redirects are not followed: a webhook answers where it was asked.
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self) -> None:
        """Send what is due forever; a failing pass is logged and retried."""
        while True:
            try:
                sent = await self.run_once()
                if self.search is not None and time.monotonic() >= self._next_confirmed_check:
                    self._next_confirmed_check = time.monotonic() + self.policy.confirmed_check_s
                    async with self.db.transaction() as session:
                        await service.check_left_confirmed(session, self.search)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("escalation sender: pass failed; retrying")
                sent = 0
            if sent < self.policy.batch:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.policy.poll_s)

    async def run_once(self) -> int:
        """Claim what is due, send it concurrently, record each outcome. Returns the count."""
        policy = self.policy
        now = utcnow()
        lease = now + timedelta(seconds=policy.timeout_s * 2 + 5)
        async with self.db.transaction() as session:
            claimed = await EscalationRepository(session).claim_due(now, policy.batch, lease)
        if not claimed:
            return 0
        outcomes = await asyncio.gather(*(self._send(row, policy) for row in claimed))
        for row, outcome in zip(claimed, outcomes, strict=True):
            await self._record(row, outcome, policy)
        return len(claimed)

    async def _send(self, row: Any, policy: DeliveryPolicy) -> Outcome:
        body = orjson.dumps(row.payload, option=orjson.OPT_SORT_KEYS)
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "failcat-escalation",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(row.secret, stamp, body),
            "X-Failcat-Delivery": row.id,
            "X-Failcat-Event": "escalation.fired",
        }
        started = time.perf_counter()
        if not self.allow_private and (refusal := await private_destination(row.url)):
            return Outcome(None, refusal, 0.0)
        client = await self.client()
        try:
            resp = await client.post(
                row.url, content=body, headers=headers, timeout=policy.timeout_s
            )
        except httpx.HTTPError as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return Outcome(None, _failure(exc, policy)[:500], elapsed)
        elapsed = (time.perf_counter() - started) * 1000
        if not 200 <= resp.status_code < 300:
            return Outcome(resp.status_code, f"HTTP {resp.status_code}", elapsed)
        if row.action != Action.TICKET.value:
            return Outcome(resp.status_code, None, elapsed)
        try:
            ticket = ticket_url_of(resp.json())
        except ValueError:
            ticket = None
        # Delivered either way (the receiver took it); a ticket answer that names no usable
        # ticket says so in the log rather than leaving the cases without a link unexplained.
        return Outcome(resp.status_code, None if ticket else NO_TICKET, elapsed, ticket)

    async def _record(self, row: Any, outcome: Outcome, policy: DeliveryPolicy) -> None:
        attempt = row.attempts + 1
        now = utcnow()
        log_row = {
            "at": now,
            "status_code": outcome.status_code,
            "error": outcome.error,
            "duration_ms": round(outcome.duration_ms, 3),
        }
        if outcome.ok:
            values = {
                "status": DeliveryStatus.DELIVERED.value,
                "delivered_at": now,
                "next_attempt_at": None,
            }
        elif attempt >= policy.max_attempts:
            values = {"status": DeliveryStatus.DEAD_LETTER.value, "next_attempt_at": None}
        else:
            values = {"next_attempt_at": now + timedelta(seconds=policy.delay(attempt))}
        values |= {"last_status_code": outcome.status_code, "last_error": outcome.error}
        async with self.db.transaction() as session:
            repo = EscalationRepository(session)
            await repo.record_attempt(row.id, attempt, values, log_row)
            if values.get("status") == DeliveryStatus.DEAD_LETTER.value:
                audit(
                    session,
                    service.ACTOR,
                    "escalation.dead_lettered",
                    f"escalation_delivery:{row.id}",
                    details={"attempts": attempt, "rule": row.name},
                )
        if outcome.ok and outcome.ticket is not None:
            await self._link_ticket(row, outcome.ticket)

    async def _link_ticket(self, row: Any, ticket: str) -> None:
        """The ticket as a `ticket` link on each case of the firing (groups carry no links in
        the catalog; a group's firing links the cases that triggered it), and on the
        delivery. A case changed meanwhile is retried once at its new revision."""
        async with self.db.transaction() as session:
            await EscalationRepository(session).set_ticket(row.id, ticket)
        for case_id in row.case_ids:
            for _ in range(2):
                try:
                    async with self.db.transaction() as session:
                        await _add_ticket_link(session, case_id, ticket, row.name)
                    break
                except Conflict:
                    continue
                except FailcatError as exc:  # the case is gone (retention)
                    log.warning("ticket link on case %s not stored: %s", case_id, exc.message)
                    break
                except ValidationError as exc:  # the case's links with it are refused
                    log.warning("ticket link on case %s not stored: %s", case_id, exc)
                    break


async def _add_ticket_link(session: Any, case_id: str, url: str, rule_name: str) -> None:
    case = await catalog.get_visible_case(session, case_id, LINKER)
    links = [
        {"kind": link.kind, "url": link.url, "title": link.title}
        for link in await catalog.links_of(session, [case_id])
    ]
    if any(link["kind"] == "ticket" and link["url"] == url for link in links):
        return
    links.append({"kind": "ticket", "url": url, "title": f"remediation ticket ({rule_name})"})
    await catalog.update_case(
        session,
        case_id,
        CasePatch.model_validate({"links": links}),
        case.revision,
        LINKER,
        reason=f"remediation ticket opened by escalation rule {rule_name}",
    )
    audit(
        session,
        service.ACTOR,
        "escalation.ticket_linked",
        f"case:{case_id}",
        details={"rule": rule_name},
    )
