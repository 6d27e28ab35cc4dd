"""A producer as a well-behaved service would write one: it streams bulk requests with stable
external ids and sends the same batch again until it gets an answer for every item, waiting
for Retry-After on a 503 and backing off while the API cannot be reached.

Everything it was told and everything that went wrong is counted per phase of the fault
scenario, so the test can say what a client saw while each backend was down."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.corpus import aiid_cases, avid_cases

BULK = "/catalog/v1/cases:bulk"
SEARCH = "/search/v1/cases"


def corpus_stream() -> Iterator[dict[str, Any]]:
    """Real incident records, endlessly: each pass through the corpora gets its own external
    ids (`aiid-17~2`), so every item is a distinct case with a stable idempotency key."""
    records = aiid_cases(913) + avid_cases(1745)
    for n in itertools.count():
        record = dict(records[n % len(records)])
        record["external_id"] = f"{record['external_id']}~{n // len(records)}"
        yield record


@dataclass
class Told:
    status: str
    id: str | None


@dataclass
class Recorder:
    """What the clients saw, by phase ("steady", "api-kill", "postgres-down", ...)."""

    phase: str = "steady"
    events: dict[str, Counter[str]] = field(default_factory=dict)
    missing_retry_after: int = 0
    server_errors: list[str] = field(default_factory=list)  # any 5xx but 503: a bug
    hangs: list[str] = field(default_factory=list)  # a request that timed out: a bug

    def count(self, what: str, n: int = 1) -> None:
        self.events.setdefault(self.phase, Counter())[what] += n

    def total(self, what: str) -> int:
        return sum(c[what] for c in self.events.values())

    def in_phase(self, phase: str, what: str) -> int:
        return self.events.get(phase, Counter())[what]


class Credentials:
    """Client-credentials token, fetched again when the API says it is no longer valid."""

    def __init__(self, client_id: str, secret: str) -> None:
        self.client_id, self.secret = client_id, secret
        self.token: str | None = None

    async def header(self, http: httpx.AsyncClient) -> dict[str, str]:
        if self.token is None:
            resp = await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(self.client_id, self.secret),
            )
            if resp.status_code != 200:
                raise _Retry(resp)
            self.token = resp.json()["access_token"]
        return {"Authorization": f"Bearer {self.token}"}


class _Retry(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response


@dataclass
class BulkStreamer:
    http: httpx.AsyncClient
    creds: Credentials
    recorder: Recorder
    batch: int = 20
    pause_s: float = 0.05
    told: dict[str, Told] = field(default_factory=dict)
    acknowledged_batches: int = 0
    in_flight: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False
    _source: Iterator[dict[str, Any]] = field(default_factory=corpus_stream)

    async def run(self) -> None:
        """Until stop(): every batch is sent until it is answered; then the next one."""
        while not self.stopping:
            items = list(itertools.islice(self._source, self.batch))
            self.recorder.count("sent", len(items))
            await self._deliver(items)
            self.acknowledged_batches += 1
            await asyncio.sleep(self.pause_s)

    def stop(self) -> None:
        self.stopping = True

    async def wait_batches(self, n: int, within_s: float = 120) -> None:
        """Wait until `n` more batches were answered."""
        target = self.acknowledged_batches + n
        deadline = time.monotonic() + within_s
        while self.acknowledged_batches < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"the stream made no progress for {within_s} s")
            await asyncio.sleep(0.05)

    async def _deliver(self, items: list[dict[str, Any]]) -> None:
        attempt = 0
        while True:
            if attempt:
                self.recorder.count("retried")
            attempt += 1
            response = await self._attempt(items)
            if response is None:
                # The API could not be reached (killed, restarting): back off, same batch.
                await asyncio.sleep(min(0.1 * attempt, 1.0))
                continue
            if response.status_code == 200:
                self._record(items, response.json())
                return
            await self._wait_after(response, attempt)

    async def _attempt(self, items: list[dict[str, Any]]) -> httpx.Response | None:
        self.in_flight.set()
        try:
            headers = await self.creds.header(self.http)
            return await self.http.post(BULK, json=items, headers=headers)
        except _Retry as retry:
            return retry.response
        except httpx.TimeoutException as exc:
            self.recorder.hangs.append(f"{self.recorder.phase}: bulk {type(exc).__name__}")
            return None
        except httpx.TransportError:
            self.recorder.count("connection_errors")
            return None
        finally:
            self.in_flight.clear()

    async def _wait_after(self, response: httpx.Response, attempt: int) -> None:
        status = response.status_code
        if status == 401:
            self.creds.token = None
            self.recorder.count("reauthenticated")
            return
        if status == 503:
            self.recorder.count("503")
            retry_after = response.headers.get("retry-after", "")
            if not retry_after.isdigit():
                self.recorder.missing_retry_after += 1
                retry_after = "1"
            await asyncio.sleep(int(retry_after))
            return
        if status >= 500:
            self.recorder.server_errors.append(f"{self.recorder.phase}: {status} {response.text}")
            await asyncio.sleep(min(0.2 * attempt, 2.0))
            return
        raise AssertionError(f"bulk request refused: {status} {response.text[:500]}")

    def _record(self, items: list[dict[str, Any]], body: dict[str, Any]) -> None:
        assert len(body["results"]) == len(items), body
        for item, result in zip(items, body["results"], strict=True):
            status = result["status"]
            self.recorder.count(status)
            key = item["external_id"]
            before = self.told.get(key)
            # Each item is acknowledged once (the batch is not sent again after an answer).
            assert before is None, f"{key} answered twice: {before} then {result}"
            self.told[key] = Told(status, result.get("id"))


@dataclass
class SearchProber:
    """A reader searching all along: while search or the database is down it must get a
    503 with Retry-After (never a 500, never a hang); its answers are otherwise ignored."""

    http: httpx.AsyncClient
    creds: Credentials
    recorder: Recorder
    interval_s: float = 0.25
    stopping: bool = False

    async def run(self) -> None:
        while not self.stopping:
            try:
                headers = await self.creds.header(self.http)
                params = {"q": "model", "first": 5}
                resp = await self.http.get(SEARCH, params=params, headers=headers)
            except _Retry as retry:
                resp = retry.response
            except httpx.TimeoutException as exc:
                self.recorder.hangs.append(f"{self.recorder.phase}: search {type(exc).__name__}")
                continue
            except httpx.TransportError:
                self.recorder.count("search_connection_errors")
                await asyncio.sleep(self.interval_s)
                continue
            if resp.status_code == 200:
                self.recorder.count("search_ok")
            elif resp.status_code == 503:
                self.recorder.count("search_503")
                if not resp.headers.get("retry-after", "").isdigit():
                    self.recorder.missing_retry_after += 1
            elif resp.status_code == 401:
                self.creds.token = None
            elif resp.status_code >= 500:
                self.recorder.server_errors.append(
                    f"{self.recorder.phase}: search {resp.status_code} {resp.text[:300]}"
                )
            else:
                raise AssertionError(f"search refused: {resp.status_code} {resp.text[:300]}")
            await asyncio.sleep(self.interval_s)

    def stop(self) -> None:
        self.stopping = True
