"""Capture policies on the producer's side: what the team agreed a candidate failure is, and
the metadata it must carry, checked before a case leaves the process.

The server keeps one policy per (model name, data source) (`setCapturePolicy` in GraphQL);
this module reads them from `GET /catalog/v1/capture-policies` (every current policy in one
request: there is one per agreement, not per case) before the first case is sent, and again
every `policy_refresh_s` seconds. Each queued case is then:

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

Hooks: `PolicyFilter` sits in front of the sender (`Client` inherits it): it reads the policies
on the sender's loop when they are due (the same HTTP client, token and transport as the bulk
requests), takes nothing from the queue before the first read has answered, and filters each
batch before it is encoded. A policy set on the server applies here from the next read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Optional

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
    """Every current policy, as last read, and when to read them again. Until the first read
    answers (or fails), nothing is sent: no case leaves before its policy is known."""

    def __init__(self, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self.policies: dict[Key, Policy] = {}
        self.ready = False
        self.next_read = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.next_read

    def store(self, policies: dict[Key, Policy]) -> None:
        self.policies = policies
        self.ready = True
        self.next_read = time.monotonic() + self.refresh_s

    def keep(self) -> None:
        """A failed read: keep what was known (nothing, the first time: send unfiltered, the
        server enforces) and read again a little later."""
        self.ready = True
        self.next_read = time.monotonic() + min(self.refresh_s, RETRY_LOOKUP_S)


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
        cache = self._policies
        if cache is not None and cache.due():
            await self._refresh_policies(cache)
        await super()._cycle()  # type: ignore[misc]

    async def _refresh_policies(self, cache: PolicyCache) -> None:
        """One request reads every current policy (there are few: one per agreement), so
        any number of keys costs one round trip per `policy_refresh_s`."""
        try:
            cache.store(await self._fetch_policies())
        except _NoRoute:
            cache.store({})
        except Exception as exc:  # down, refused: send unfiltered meanwhile
            cache.keep()
            self._throttle.warn(  # type: ignore[attr-defined]
                "policy", "failcat: capture policies not read (%s)", exc
            )

    async def _fetch_policies(self) -> dict[Key, Policy]:
        url = self.url + POLICIES_PATH  # type: ignore[attr-defined]
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
        found: dict[Key, Policy] = {}
        for body in response.json().get("policies") or []:
            model, source = body.get("model"), body.get("data_source")
            if isinstance(model, str) and isinstance(source, str):
                found[(model, source)] = Policy(body)
        return found

    def _take(self) -> list[tuple[int, dict[str, Any], float]]:
        """Nothing leaves before the first read of the policies has answered."""
        cache = self._policies
        if cache is not None and not cache.ready:
            return []
        return super()._take()  # type: ignore[misc,no-any-return]

    def _encode(self, items: list[tuple[int, dict[str, Any], float]]) -> list[bytes]:
        cache = self._policies
        if cache is not None and cache.policies:
            items = self._apply_policies(cache.policies, items)
        return super()._encode(items)  # type: ignore[misc,no-any-return]

    def _apply_policies(
        self, policies: dict[Key, Policy], items: list[tuple[int, dict[str, Any], float]]
    ) -> list[tuple[int, dict[str, Any], float]]:
        kept, filtered, invalid = [], 0, 0
        for item in items:
            kind, fields = item[0], item[1]
            key = key_of(fields) if kind == KIND_CASE else None
            policy = policies.get(key) if key is not None else None
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
