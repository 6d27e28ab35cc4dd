"""Capture policies on the producer's side: what the team agreed a candidate failure is, and
the metadata it must carry, checked before a case leaves the process.

The server keeps one policy per (model name, data source) (`setCapturePolicy` in GraphQL);
this module reads it from `GET /catalog/v1/capture-policies`, caches it per key and reads it
again every `policy_refresh_s` seconds. Each queued case is then:

- sent, when its key has no policy, or it meets the policy;
- counted `filtered` and not sent, when it meets none of the qualifying conditions;
- counted `invalid` and not sent, when a required path is missing (the server would refuse it
  naming the same path).

The rules are the server's (services/catalog/capture_policies.py), written again here because
this package depends on httpx only: the JSON Schema of `input` is not checked here (the server
checks it). The client drops only what it is sure the server would refuse: a value it cannot
look into (an object that is serialized later) or a confidence that is not a number counts as
"present"/"qualifying", and the server decides.

When the policy cannot be read (server down, an older server without the route, no scope),
cases are sent as they are and the server enforces the policy when they arrive (a case
replayed from the spool included).

Hooks: `PolicyFilter` sits in front of the sender (`Client` inherits it); it takes cases from
the queue only up to the first one whose key was never looked up, looks those keys up on the
sender's loop (the same HTTP client, token and transport as the bulk requests), and filters
each batch before it is encoded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Optional
from urllib.parse import urlencode

from failcat_client._wire import KIND_CASE

log = logging.getLogger("failcat_client")

POLICIES_PATH = "/catalog/v1/capture-policies"
# After a failed lookup, how long cases of that key are sent unfiltered before trying again.
RETRY_LOOKUP_S = 10.0

Key = tuple[str, str]

_MISSING = object()


def label(value: Any) -> Any:
    """What `prediction_mismatch` compares: a dict's `label` (or `class`), else the value."""
    if isinstance(value, Mapping):
        return value.get("label", value.get("class", value))
    return value


def truthy(value: Any) -> bool:
    """A signal is present when set to something: not null, false, 0, "" or empty."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and value == 0:
        return False
    return not (isinstance(value, (str, bytes, Mapping, list, tuple)) and not value)


def lookup(value: Any, path: str) -> Any:
    """The value at a dotted path, `_MISSING` when absent or null, or `value` itself when it
    reaches something this module cannot look into (serialized later: let the server tell)."""
    for segment in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(segment, _MISSING)
        elif isinstance(value, (list, tuple)):
            if not segment.isdigit() or int(segment) >= len(value):
                return _MISSING
            value = value[int(segment)]
        elif value is _MISSING or value is None:
            return _MISSING
        else:
            return value  # opaque: assume present
        if value is None or value is _MISSING:
            return _MISSING
    return value


def _number(value: Any) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class Policy:
    """One version of a (model, data source)'s policy, as the REST route answers it."""

    __slots__ = (
        "confidence_above",
        "confidence_below",
        "exception",
        "latency_over_ms",
        "mismatch",
        "name",
        "required",
        "signals",
        "version",
    )

    def __init__(self, body: Mapping[str, Any]) -> None:
        q = body.get("qualify") or {}
        self.name = str(body.get("name") or "")
        self.version = int(body.get("version") or 0)
        self.confidence_below = _number(q.get("confidence_below"))
        self.confidence_above = _number(q.get("confidence_above"))
        self.latency_over_ms = _number(q.get("latency_over_ms"))
        self.mismatch = bool(q.get("prediction_mismatch"))
        self.signals = tuple(q.get("signals") or ())
        self.exception = bool(q.get("exception"))
        self.required = tuple(body.get("required") or ())

    @property
    def has_conditions(self) -> bool:
        return (
            self.confidence_below is not None
            or self.confidence_above is not None
            or self.latency_over_ms is not None
            or self.mismatch
            or bool(self.signals)
            or self.exception
        )

    def missing(self, case: Mapping[str, Any]) -> list[str]:
        """The required paths `case` lacks."""
        return [p for p in self.required if lookup(case, p) is _MISSING]

    def qualifies(self, case: Mapping[str, Any]) -> bool:
        """True when any condition holds, or when one cannot be judged here."""
        if not self.has_conditions:
            return True
        raw = case.get("confidence")
        confidence = _number(raw)
        if raw is not None and confidence is None:
            return True  # not a number to us: the server decides
        if confidence is not None:
            if self.confidence_below is not None and confidence < self.confidence_below:
                return True
            if self.confidence_above is not None and confidence > self.confidence_above:
                return True
        latency = _number(case.get("latency_ms"))
        if (
            self.latency_over_ms is not None
            and latency is not None
            and latency > self.latency_over_ms
        ):
            return True
        if self.mismatch:
            prediction, expected = case.get("prediction"), case.get("expected")
            if (
                prediction is not None
                and expected is not None
                and label(prediction) != label(expected)
            ):
                return True
        signals = case.get("signals")
        if isinstance(signals, Mapping):
            if self.exception and truthy(signals.get("exception")):
                return True
            if any(truthy(signals.get(name)) for name in self.signals):
                return True
        elif signals is not None and (self.exception or self.signals):
            return True  # opaque signals: the server decides
        return False

    def __repr__(self) -> str:
        return f"capture policy {self.name!r} (version {self.version})"


def key_of(case: Mapping[str, Any]) -> Optional[Key]:
    model, source = case.get("model"), case.get("data_source")
    if isinstance(model, Mapping):
        model = model.get("name")
    if isinstance(model, str) and isinstance(source, str):
        return (model.strip(), source.strip())
    return None


class PolicyCache:
    """Each key's policy (None: the key has none, or it could not be read) and when to read
    it again."""

    def __init__(self, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self.entries: dict[Key, tuple[Optional[Policy], float]] = {}
        self.wanted: set[Key] = set()

    def known(self, key: Key) -> bool:
        return key in self.entries

    def policy(self, key: Key) -> Optional[Policy]:
        entry = self.entries.get(key)
        return entry[0] if entry is not None else None

    def due(self) -> list[Key]:
        now = time.monotonic()
        stale = [k for k, (_, at) in self.entries.items() if at <= now]
        return sorted(self.wanted.union(stale))

    def store(self, key: Key, policy: Optional[Policy], ttl: Optional[float] = None) -> None:
        self.entries[key] = (policy, time.monotonic() + (self.refresh_s if ttl is None else ttl))
        self.wanted.discard(key)

    def keep(self, key: Key) -> None:
        """A failed refresh: keep what was known, look again a little later."""
        old = self.entries.get(key)
        self.store(key, old[0] if old else None, ttl=RETRY_LOOKUP_S)


class PolicyFilter:
    """The sender's hooks (a mixin before `Engine`): see the module's docstring."""

    _policies: Optional[PolicyCache] = None

    @staticmethod
    def take_options(options: dict[str, Any]) -> dict[str, Any]:
        """Remove this mixin's keywords from `options` (Engine refuses unknown ones)."""
        return {
            "capture_policies": options.pop("capture_policies", True),
            "policy_refresh_s": options.pop("policy_refresh_s", 60.0),
        }

    def _init_policies(self, capture_policies: bool = True, policy_refresh_s: float = 60.0) -> None:
        """`capture_policies=False` sends every case (the server still enforces)."""
        counts: dict[str, int] = self._counts  # type: ignore[attr-defined]
        counts.setdefault("filtered", 0)
        self._policies = PolicyCache(max(1.0, policy_refresh_s)) if capture_policies else None

    # ---- on the sender's loop --------------------------------------------------------------
    async def _cycle(self) -> None:
        await self._refresh_policies()
        while True:
            await super()._cycle()  # type: ignore[misc]
            cache = self._policies
            if cache is None or not cache.wanted or self._stop.is_set():  # type: ignore[attr-defined]
                return
            # The queue stopped at a key seen for the first time: look it up, go on.
            await self._refresh_policies()

    async def _refresh_policies(self) -> None:
        cache = self._policies
        if cache is None:
            return
        for key in cache.due():
            try:
                cache.store(key, await self._fetch_policy(key))
            except _NoRoute:
                cache.store(key, None)
            except Exception as exc:  # down, refused: send unfiltered meanwhile
                cache.keep(key)
                self._throttle.warn(  # type: ignore[attr-defined]
                    "policy", "failcat: capture policy of %s/%s not read (%s)", key[0], key[1], exc
                )

    async def _fetch_policy(self, key: Key) -> Optional[Policy]:
        url = (
            self.url  # type: ignore[attr-defined]
            + POLICIES_PATH
            + "?"
            + urlencode({"model": key[0], "data_source": key[1]})
        )
        token = await self._token()  # type: ignore[attr-defined]
        http = self._http  # type: ignore[attr-defined]
        response = await http.get(url, headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 401:
            self._auth.invalidate(token)  # type: ignore[attr-defined]
            token = await self._token()  # type: ignore[attr-defined]
            response = await http.get(url, headers={"Authorization": f"Bearer {token}"})
        if response.status_code in (403, 404):
            raise _NoRoute()  # an older server, or a client without the scope
        response.raise_for_status()
        for body in response.json().get("policies") or []:
            if (body.get("model"), body.get("data_source")) == key:
                return Policy(body)
        return None

    def _take(self) -> list[tuple[int, dict[str, Any], float]]:
        """The engine's `_take`, stopping before the first case whose key was never looked
        up (it waits for the lookup `_cycle` makes next)."""
        cache = self._policies
        if cache is None:
            return super()._take()  # type: ignore[misc,no-any-return]
        queue = self._queue  # type: ignore[attr-defined]
        entries = cache.entries
        items = []
        with self._lock:  # type: ignore[attr-defined]
            limit = min(len(queue), self.batch_size)  # type: ignore[attr-defined]
            while len(items) < limit:
                kind, fields, _ = queue[0]
                if kind == KIND_CASE:
                    key = key_of(fields)
                    if key is not None and key not in entries:
                        cache.wanted.add(key)
                        break
                items.append(queue.popleft())
            self._inflight_items = len(items)
        return items

    def _encode(self, items: list[tuple[int, dict[str, Any], float]]) -> list[bytes]:
        cache = self._policies
        if cache is not None and cache.entries:
            items = self._apply_policies(cache, items)
        return super()._encode(items)  # type: ignore[misc,no-any-return]

    def _apply_policies(
        self, cache: PolicyCache, items: list[tuple[int, dict[str, Any], float]]
    ) -> list[tuple[int, dict[str, Any], float]]:
        kept, filtered, invalid = [], 0, 0
        for item in items:
            kind, fields = item[0], item[1]
            key = key_of(fields) if kind == KIND_CASE else None
            policy = cache.policy(key) if key is not None else None
            if policy is None:
                kept.append(item)
                continue
            missing = policy.missing(fields)
            if missing:
                invalid += 1
                self._throttle.warn(  # type: ignore[attr-defined]
                    "policy-missing",
                    "failcat: case not sent: %s is required by %r",
                    missing[0],
                    policy,
                )
            elif not policy.qualifies(fields):
                filtered += 1
            else:
                kept.append(item)
        if filtered or invalid:
            with self._lock:  # type: ignore[attr-defined]
                self._counts["filtered"] += filtered  # type: ignore[attr-defined]
                self._counts["invalid"] += invalid  # type: ignore[attr-defined]
        return kept


class _NoRoute(Exception):
    pass
