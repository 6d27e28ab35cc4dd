"""What `Client` and `AsyncClient` share: the bounded queue `capture()` feeds, the counters, and
the sender (one asyncio coroutine; `Client` runs it on a loop in its own daemon thread,
`AsyncClient` as a task on the caller's loop).

The sender's rules:
- a batch (by count, bytes, or `flush_interval_s`) goes to `POST /catalog/v1/cases:bulk`;
  429, 5xx and connection errors are retried `max_retries` times with full-jitter backoff
  (Retry-After honoured); after that the batch goes to the disk spool and the client is "down";
- while the spool holds anything, new batches are appended behind it (capture order is kept),
  and its oldest batch is re-offered to the server on a backoff schedule; once it is accepted,
  the spool drains batch after batch;
- each case carries an `external_id`, so a batch sent twice (a lost answer, a replay after a
  restart) is answered `duplicate` and stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Callable, Optional, TypeVar

import httpx

from failcat_client import _wire
from failcat_client._auth import AuthError, TokenState
from failcat_client._retry import RETRYABLE_STATUS, backoff_delay, parse_retry_after
from failcat_client._spool import Spool, SpoolLocked

log = logging.getLogger("failcat_client")

T = TypeVar("T")

BULK_PATH = "/catalog/v1/cases:bulk"
EVENTS_PATH = "/catalog/v1/events"
COUNTERS = (
    "queued",
    "sent",
    "retried",
    "spooled",
    "dropped",
    "invalid",
    "sampled_out",
    "rejected",
)
SUCCESS = frozenset({"created", "duplicate"})


# The event's own fields; every other keyword of record_event is a detail of its kind.
EVENT_FIELDS = ("occurred_at", "title", "external_id")


class _Outcome:
    __slots__ = ("kind", "reason", "results", "retry_after", "status")

    def __init__(
        self,
        kind: str,
        results: Optional[list[Any]] = None,
        retry_after: Optional[float] = None,
        reason: str = "",
        status: int = 0,
    ) -> None:
        self.kind = kind  # "ok" | "retry" | "fatal"
        self.results = results
        self.retry_after = retry_after
        self.reason = reason
        self.status = status  # the HTTP status of a "fatal" answer


class _Throttled:
    """Log a recurring warning at most once per interval, with how often it happened."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: Any, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        self._count[key] = self._count.get(key, 0) + 1
        if now - self._last.get(key, -1e9) >= self.interval_s:
            n = self._count.pop(key)
            self._last[key] = now
            if n > 1:
                log.log(level, message + " (%d times since the last report)", *args, n)
            else:
                log.log(level, message, *args)


def base_url(url: Any) -> str:
    """The server's address, checked here: a missing or scheme-less one would otherwise fail
    deep in httpx, or only in the log while every capture is spooled or dropped."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(
            f"failcat_client: url is required: the failcat server's address, e.g. "
            f"https://failcat.example.com (got {url!r})"
        )
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"failcat_client: url {url!r}: expected an http:// or https:// URL")
    return url.rstrip("/")


class Engine:
    """The state and the sender; subclasses decide where the sender runs."""

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: Optional[str] = None,
        model: Any = None,
        model_version: Optional[str] = None,
        data_source: Optional[str] = None,
        environment: Optional[Mapping[str, str]] = None,
        provenance: Optional[Mapping[str, str]] = None,
        spool_dir: Optional[str] = None,
        spool_max_bytes: int = 64 * 1024 * 1024,
        spool_segment_bytes: Optional[int] = None,
        queue_size: int = 10_000,
        batch_size: int = 500,
        batch_bytes: int = 4 * 1024 * 1024,
        flush_interval_s: float = 1.0,
        max_retries: int = 3,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 30.0,
        timeout_s: float = 10.0,
        token_url: Optional[str] = None,
        token_refresh_margin_s: Optional[float] = None,
        exit_timeout_s: float = 5.0,
        transport: Optional[Any] = None,
        verify: Any = True,
    ) -> None:
        self.url = base_url(url)
        self._auth = TokenState(
            self.url, client_id, client_secret, scope, token_refresh_margin_s, token_url
        )
        self._model = model
        self._model_version = model_version
        self._data_source = data_source
        self._environment = dict(environment) if environment else None
        self._provenance = dict(provenance) if provenance else None
        self.queue_size = max(1, queue_size)
        # The server takes at most 10,000 items and 20 MB per request.
        self.batch_size = max(1, min(batch_size, 10_000))
        self.batch_bytes = max(1024, min(batch_bytes, 16 * 1024 * 1024))
        self.flush_interval_s = flush_interval_s
        self.max_retries = max(0, max_retries)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.exit_timeout_s = exit_timeout_s
        self._transport = transport
        self._verify = verify

        self._lock = threading.Lock()
        self._queue: deque[tuple[int, dict[str, Any], float]] = deque()
        self._inflight: list[bytes] = []
        self._inflight_items = 0
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._closed = False
        self._throttle = _Throttled()

        self._down = False
        self._attempt = 0
        self._next_probe = 0.0
        self._probe_now = False
        self._wake_pending = False

        self._spool: Optional[Spool] = None
        if spool_dir is not None:
            try:
                self._spool = Spool(spool_dir, spool_max_bytes, spool_segment_bytes)
            except (SpoolLocked, OSError) as exc:
                log.error("failcat spool disabled: %s", exc)
        if self._spool is not None and self._spool.pending:
            log.info("failcat spool holds %d items from before: replaying", self._spool.pending)

    # ---- the caller's side: never blocks beyond a lock, never raises ----------------------
    def capture(
        self,
        model: Any = None,
        data_source: Optional[str] = None,
        input: Any = None,
        prediction: Any = None,
        expected: Any = None,
        confidence: Optional[float] = None,
        latency_ms: Optional[float] = None,
        *,
        model_version: Optional[str] = None,
        **fields: Any,
    ) -> Optional[str]:
        """Queue one case; returns its `external_id`, or None when it was dropped.

        `model` is `{"name", "version"}`, a (name, version) pair, or a name with
        `model_version`; other wire fields (`environment`, `signals`, `title`, `tags`,
        `external_id`, `occurred_at`, ...) pass through as keywords. The values are
        serialized later by the sender: do not mutate them after the call.
        """
        try:
            case: dict[str, Any] = {
                "model": _wire.model_ref(
                    self._model if model is None else model,
                    self._model_version if model_version is None else model_version,
                ),
                "data_source": self._data_source if data_source is None else data_source,
            }
            if input is not None:
                case["input"] = input
            if prediction is not None:
                case["prediction"] = prediction
            if expected is not None:
                case["expected"] = expected
            if confidence is not None:
                case["confidence"] = confidence
            if latency_ms is not None:
                case["latency_ms"] = latency_ms
            if fields:
                case.update(fields)
            if self._environment is not None and "environment" not in case:
                case["environment"] = self._environment
            if self._provenance is not None and "provenance" not in case:
                case["provenance"] = self._provenance
            external_id = case.get("external_id")
            if external_id is None:
                external_id = case["external_id"] = _wire.new_external_id()
            return external_id if self._put(_wire.KIND_CASE, case) else None
        except Exception:  # the caller's request path must never see our failure
            log.exception("failcat capture failed")
            return None

    def record_event(
        self,
        kind: str,
        *,
        model: Any = None,
        model_version: Optional[str] = None,
        data_source: Optional[str] = None,
        environment: Optional[Mapping[str, str]] = None,
        link: Optional[str] = None,
        **fields: Any,
    ) -> Optional[str]:
        """Queue a context event (`deploy`, `feature_change`, `drift_alert`,
        `environment_shift`, ...) for `POST /catalog/v1/events`.

        Kind-specific fields (`feature`, `new_hash`, `metric`, `value`, `threshold`, `window`,
        `key`, `old`, `new`, `rollout`, ...) pass as keywords and are sent as the event's
        `details`; `occurred_at`, `title` and `external_id` are the event's own. A server
        without that route (404) counts the event as dropped and logs a warning."""
        try:
            scope: dict[str, Any] = {}
            model = self._model if model is None else model
            if model is not None:
                ref = _wire.model_ref(
                    model, self._model_version if model_version is None else model_version
                )
                scope["model"] = ref.get("name") if isinstance(ref, dict) else ref
                if isinstance(ref, dict) and ref.get("version") is not None:
                    scope["version"] = ref["version"]
            source = self._data_source if data_source is None else data_source
            if source is not None:
                scope["data_source"] = source
            env = self._environment if environment is None else environment
            if env:
                scope["environment"] = dict(env)
            event: dict[str, Any] = {"kind": kind, "scope": scope}
            if link is not None:
                event["link"] = link
            for own in EVENT_FIELDS:
                if own in fields:
                    event[own] = fields.pop(own)
            if fields:
                event["details"] = fields
            external_id = event.get("external_id")
            if external_id is None:
                external_id = event["external_id"] = _wire.new_external_id()
            return external_id if self._put(_wire.KIND_EVENT, event) else None
        except Exception:  # never into the caller's path
            log.exception("failcat record_event failed")
            return None

    def _put(self, kind: int, fields: dict[str, Any]) -> bool:
        now = time.time()
        queue = self._queue
        with self._lock:
            if self._closed or len(queue) >= self.queue_size:
                self._counts["dropped"] += 1
                full = True
            else:
                queue.append((kind, fields, now))
                self._counts["queued"] += 1
                full = False
        if full:
            self._throttle.warn(
                "overflow",
                "failcat queue full (%d) or client closed: item dropped",
                self.queue_size,
            )
            return False
        if len(queue) >= self.batch_size and not self._wake_pending:
            self._wake_pending = True
            self._wake_sender()
        return True

    def _wake_sender(self) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """Counters since start: queued, sent (created or duplicate), retried (items of
        failed attempts kept for another), spooled, dropped, invalid, sampled_out, rejected
        (any other status), plus `pending` (in memory, in flight or spooled) and
        `token_fetches`."""
        with self._lock:
            out = dict(self._counts)
            out["pending"] = self._pending_locked()
        out["token_fetches"] = self._auth.fetches
        return out

    def _pending_locked(self) -> int:
        spooled = self._spool.pending if self._spool is not None else 0
        return len(self._queue) + self._inflight_items + spooled

    def _pending(self) -> int:
        with self._lock:
            return self._pending_locked()

    def _count(self, name: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._counts[name] += n

    # ---- the sender ----------------------------------------------------------------------
    def _new_http(self) -> httpx.AsyncClient:
        kwargs: dict[str, Any] = {"timeout": self.timeout_s, "verify": self._verify}
        if self._transport is not None:
            kwargs["transport"] = self._transport
        return httpx.AsyncClient(**kwargs)

    async def _offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (JSON, fsync); `AsyncClient` moves it off the caller's loop."""
        return fn(*args)

    async def _run(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        self._wake = wake
        self._stop = stop
        self._http = self._new_http()
        try:
            while not stop.is_set():
                try:
                    await self._cycle()
                except Exception:  # a bug must not stop delivery for the life of the process
                    log.exception("failcat sender error")
                    with self._lock:
                        lost, self._inflight, self._inflight_items = len(self._inflight), [], 0
                        self._counts["dropped"] += lost
                self._notify()
                timeout = self.flush_interval_s
                if self._down and self._spool is not None and self._spool.pending:
                    timeout = min(timeout, max(0.0, self._next_probe - time.monotonic()))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout)
                wake.clear()
                self._wake_pending = False
        finally:
            self._spill()
            await asyncio.shield(self._http.aclose())
            self._notify()

    def _notify(self) -> None:
        """Tell `flush()` waiters that something moved."""

    def _take(self) -> list[tuple[int, dict[str, Any], float]]:
        queue = self._queue
        with self._lock:
            n = min(len(queue), self.batch_size)
            items = [queue.popleft() for _ in range(n)]
            self._inflight_items = n
        return items

    def _encode(self, items: list[tuple[int, dict[str, Any], float]]) -> list[bytes]:
        lines: list[bytes] = []
        for kind, fields, captured in items:
            try:
                line = _wire.encode(kind, fields, captured)
            except (TypeError, ValueError, RecursionError) as exc:
                self._count("invalid")
                self._throttle.warn("encode", "failcat: an item could not be serialized: %s", exc)
                continue
            lines.append(line)
        return lines

    def _settle_inflight(self) -> None:
        with self._lock:
            self._inflight = []
            self._inflight_items = 0

    async def _cycle(self) -> None:
        """Move everything captured so far towards the server (or the spool)."""
        while not self._stop.is_set():
            progressed = False
            items = self._take()
            if items:
                progressed = True
                lines = await self._offload(self._encode, items)
                # Not in a `finally`: if the task is cancelled mid-send, `_spill` must still
                # find these lines.
                self._inflight = lines
                if self._spooling():
                    await self._to_spool(lines)
                else:
                    await self._send_live(lines)
                self._settle_inflight()
            if self._spooling() and self._probe_due():
                progressed = await self._replay_one() or progressed
            self._notify()
            if not progressed:
                return

    def _spooling(self) -> bool:
        return self._spool is not None and (self._down or self._spool.pending > 0)

    def _probe_due(self) -> bool:
        if self._probe_now:
            self._probe_now = False
            return True
        return not self._down or time.monotonic() >= self._next_probe

    def _enter_down(self, retry_after: Optional[float]) -> None:
        self._attempt += 1
        delay = backoff_delay(self._attempt, self.backoff_base_s, self.backoff_max_s, retry_after)
        if not self._down:
            log.warning("failcat server unreachable: spooling, next attempt in %.1f s", delay)
        self._down = True
        self._next_probe = time.monotonic() + delay

    def _leave_down(self) -> None:
        if self._down:
            log.info("failcat server reachable again: replaying the spool")
        self._down = False
        self._attempt = 0

    async def _to_spool(self, lines: list[bytes]) -> None:
        if not lines:
            return
        assert self._spool is not None
        try:
            dropped = await self._offload(self._spool.append, lines)
        except OSError as exc:  # disk full, permissions: the cases are lost, say so
            self._throttle.warn("spoolwrite", "failcat spool write failed: %s", exc)
            dropped = len(lines) + self._spool.last_dropped
            lines = []
        else:
            if dropped:
                self._throttle.warn(
                    "spoolfull", "failcat spool full: dropped the %d oldest spooled items", dropped
                )
        with self._lock:
            self._counts["spooled"] += len(lines)
            self._counts["dropped"] += dropped
            # Written: from now on `pending` counts these lines through the spool.
            self._inflight = []
            self._inflight_items = 0

    async def _send_live(self, lines: list[bytes]) -> None:
        runs = _runs(lines, self.batch_bytes)
        for i, (is_event, run) in enumerate(runs):
            attempt = 0
            while True:
                outcome = await self._post(run, is_event, replay=False)
                if outcome.kind != "retry":
                    self._account(run, is_event, outcome)
                    self._inflight = [line for _, r in runs[i + 1 :] for line in r]
                    break
                attempt += 1
                self._count("retried", len(run))
                if attempt > self.max_retries or self._stop.is_set():
                    rest = [line for _, r in runs[i:] for line in r]
                    if self._spool is not None:
                        await self._to_spool(rest)
                        self._enter_down(outcome.retry_after)
                    else:
                        self._count("dropped", len(rest))
                        self._throttle.warn(
                            "lost",
                            "failcat: %d items dropped after %d attempts (%s); "
                            "set spool_dir to keep them",
                            len(rest),
                            attempt,
                            outcome.reason,
                        )
                    return
                delay = backoff_delay(
                    attempt, self.backoff_base_s, self.backoff_max_s, outcome.retry_after
                )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)

    async def _replay_one(self) -> bool:
        """Offer the spool's oldest batch once; True when it was accepted."""
        assert self._spool is not None
        try:
            lines, end = await self._offload(self._spool.peek, self.batch_size, self.batch_bytes)
        except OSError as exc:
            self._abandon_spool(exc)
            return False
        if not lines:
            self._leave_down()
            return False
        start = end - sum(len(line) + 1 for line in lines)
        is_event, run = _runs(lines, self.batch_bytes)[0]
        position = start + sum(len(line) + 1 for line in run)
        outcome = await self._post(run, is_event, replay=True)
        if outcome.kind == "retry":
            self._count("retried", len(run))
            self._enter_down(outcome.retry_after)
            return False
        self._leave_down()
        # Counted before the spool lets go of them: once `pending` reaches 0 the counters
        # are final.
        self._account(run, is_event, outcome)
        try:
            await self._offload(self._spool.commit, position, len(run))
        except OSError as exc:
            self._abandon_spool(exc)
        return True

    def _abandon_spool(self, exc: OSError) -> None:
        """An unreadable spool: count what it held as dropped and carry on without it."""
        assert self._spool is not None
        log.error("failcat spool unusable (%s): %d items dropped", exc, self._spool.pending)
        with self._lock:
            self._counts["dropped"] += self._spool.pending
            spool, self._spool = self._spool, None
        spool.close()
        self._leave_down()

    # ---- one request ---------------------------------------------------------------------
    async def _token(self) -> str:
        token = self._auth.current()
        if token is None:
            token = await self._auth.fetch_async(self._http)
        return token

    async def _request(self, path: str, body: bytes, content_type: str) -> httpx.Response:
        token = await self._token()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
        response = await self._http.post(self.url + path, content=body, headers=headers)
        if response.status_code == 401:
            self._auth.invalidate(token)
            headers["Authorization"] = f"Bearer {await self._token()}"
            response = await self._http.post(self.url + path, content=body, headers=headers)
        return response

    async def _post(self, lines: list[bytes], is_event: bool, replay: bool) -> _Outcome:
        try:
            if is_event:
                # Consecutive events go in one request (the route takes an array): one
                # request each cost a round trip and a transaction per event.
                bodies = [_wire.event_body(line) for line in lines]
                body = bodies[0] if len(bodies) == 1 else b"[" + b",".join(bodies) + b"]"
                response = await self._request(EVENTS_PATH, body, "application/json")
            elif replay:
                # NDJSON from the spool: a torn or corrupt line becomes one invalid item
                # instead of making the whole batch unreadable.
                body = await self._offload(_wire.ndjson, lines)
                response = await self._request(BULK_PATH, body, "application/x-ndjson")
            else:
                body = await self._offload(_wire.json_array, lines)
                response = await self._request(BULK_PATH, body, "application/json")
        except AuthError as exc:
            # An error, not a warning: nothing is delivered until someone fixes the secret.
            self._throttle.warn("auth", "failcat credentials refused: %s", exc, level=logging.ERROR)
            return _Outcome("retry", reason=str(exc))
        except httpx.HTTPStatusError as exc:  # metadata or token endpoint
            return _Outcome(
                "retry",
                retry_after=parse_retry_after(exc.response.headers.get("retry-after")),
                reason=str(exc),
            )
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            return _Outcome("retry", reason=f"{type(exc).__name__}: {exc}")
        status = response.status_code
        if 200 <= status < 300:
            # An event is answered like a batch of cases: one result per item, and an
            # `invalid` one (an unknown kind, a deploy without its version) is not sent.
            try:
                return _Outcome("ok", results=response.json()["results"])
            except (ValueError, KeyError, TypeError) as exc:
                return _Outcome("retry", reason=f"unreadable answer: {exc}")
        if status == 413 and len(lines) > 1:
            half = len(lines) // 2
            first = await self._post(lines[:half], is_event, replay)
            if first.kind != "ok":
                return first
            second = await self._post(lines[half:], is_event, replay)
            if second.kind != "ok":
                # The first half is stored; resending it is answered `duplicate`.
                return second
            return _Outcome("ok", results=(first.results or []) + (second.results or []))
        reason = f"HTTP {status}: {response.text[:300]}"
        if status in RETRYABLE_STATUS or status in (401, 403):
            if status in (401, 403):
                self._throttle.warn("denied", "failcat: %s", reason, level=logging.ERROR)
            return _Outcome(
                "retry",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                reason=reason,
            )
        return _Outcome("fatal", reason=reason, status=status)

    def _account(self, lines: list[bytes], is_event: bool, outcome: _Outcome) -> None:
        if outcome.kind == "fatal":
            if is_event and outcome.status == 404:
                self._throttle.warn(
                    "events404",
                    "failcat: this server has no %s route (context events need a newer "
                    "failcat server): event dropped",
                    EVENTS_PATH,
                )
                self._count("dropped", len(lines))
            elif outcome.status in (400, 413, 422):
                self._count("invalid", len(lines))
                log.warning("failcat: %d items refused: %s", len(lines), outcome.reason)
            else:
                self._count("dropped", len(lines))
                log.error("failcat: %d items dropped: %s", len(lines), outcome.reason)
            return
        counts = dict.fromkeys(("sent", "invalid", "sampled_out", "rejected"), 0)
        problems: list[str] = []
        for result in outcome.results or []:
            status = result.get("status")
            if status in SUCCESS:
                counts["sent"] += 1
            elif status == "sampled_out":
                counts["sampled_out"] += 1
            else:
                counts["invalid" if status == "invalid" else "rejected"] += 1
                if len(problems) < 3:
                    problems.append(_describe(lines, result))
        # An answer shorter than the batch is not proof of storage: those items count as
        # rejected rather than silently as sent.
        counts["rejected"] += max(0, len(lines) - len(outcome.results or []))
        with self._lock:
            for name, n in counts.items():
                self._counts[name] += n
        if problems:
            bad = counts["invalid"] + counts["rejected"]
            log.warning("failcat: %d items not stored, e.g. %s", bad, "; ".join(problems))

    def _spill(self) -> None:
        """On shutdown: what is still in memory goes to the spool (or is counted lost)."""
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
            inflight = self._inflight
            self._inflight = []
            self._inflight_items = 0
        lines = list(inflight) + self._encode(items)
        if not lines:
            return
        if self._spool is not None:
            try:
                dropped = self._spool.append(lines)
            except OSError as exc:
                log.error("failcat: could not spool %d items at exit: %s", len(lines), exc)
                self._count("dropped", len(lines))
                return
            self._count("spooled", len(lines))
            self._count("dropped", dropped)
        else:
            self._count("dropped", len(lines))
            log.warning("failcat: %d items undelivered at close (no spool_dir)", len(lines))

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()


def _runs(lines: list[bytes], max_bytes: int) -> list[tuple[bool, list[bytes]]]:
    """Consecutive cases form one bulk request, consecutive events one events request, each
    of at most `max_bytes` (at least one item): the order of capture is kept."""
    runs: list[tuple[bool, list[bytes]]] = []
    size = 0
    for line in lines:
        event = _wire.is_event(line)
        if runs and runs[-1][0] == event and size + len(line) + 1 <= max_bytes:
            runs[-1][1].append(line)
            size += len(line) + 1
        else:
            runs.append((event, [line]))
            size = len(line) + 1
    return runs


def _describe(lines: list[bytes], result: Mapping[str, Any]) -> str:
    index = result.get("index")
    external_id = None
    if isinstance(index, int) and 0 <= index < len(lines):
        try:
            external_id = json.loads(lines[index]).get("external_id")
        except ValueError:
            external_id = None
    return f"{external_id or index}: {result.get('status')} {result.get('errors') or ''}".strip()
