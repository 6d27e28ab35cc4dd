"""The anonymisation profiles of a bundle, applied to each exported record.

- `internal`: the records as the exporting reader sees them.
- `partner`: raw payloads (`input`, `prediction`, `expected`, `signals`) and links dropped;
  teams, actors, sources, external ids, fingerprints and ids replaced by stable pseudonyms (a
  keyed HMAC: the same value gets the same pseudonym in every bundle of this instance, so
  groups still form and a re-import is idempotent at the partner); times coarsened to the day;
  environment values generalised (a version to its major, a cloud region to its area, anything
  else to a pseudonym); free text through `redact_free_text`.
- `public`: `partner`, and only cases of sensitivity `public`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

from services.governance.redaction.detectors import maybe_pii
from services.governance.redaction.service import mask_text

PROFILES = ("internal", "partner", "public")
RAW_PAYLOAD = ("input", "prediction", "expected", "signals")
FREE_TEXT = ("title", "summary", "impact")
VERSION = re.compile(r"^v?(\d+)(\.\d+)+[\w.+-]*$")
REGION = re.compile(r"^([a-z]{2,3})-[a-z]+(-[a-z]+)?-\d+[a-z]?$")
# k-anonymity: the quasi-identifiers a partner could link to other data, per exported case.
QUASI_IDENTIFIERS = ("model", "data_source", "occurred_day", "environment")
K_THRESHOLD = 5
KEY_ENV = "FAILCAT_SHARING_PSEUDONYM_KEY"


def redact_free_text(text: str | None) -> str | None:
    """Free text (titles, summaries, write-ups) through the governance service's PII
    detectors, findings masked: the partner and public profiles call this for every
    free-text field, whatever the source's own redaction policy kept."""
    if text is None or not maybe_pii(text):  # ingest's pre-filter: nothing looks like PII
        return text
    return mask_text(text)


def pseudonym_key(data_dir: Path, env: dict[str, str]) -> bytes:
    """The instance's pseudonym key: $FAILCAT_SHARING_PSEUDONYM_KEY (several hosts), else a
    file in the data dir made on first use (mode 0600)."""
    if env.get(KEY_ENV):
        return env[KEY_ENV].encode()
    path = Path(data_dir) / "sharing-pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        import os

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


# Kinds with few distinct values (teams, actors, sources, environment values, fingerprints)
# repeat on every case: their pseudonyms are kept. Ids are unique per record, never kept.
CACHED_KINDS = frozenset({"team", "actor", "source", "value", "fp"})
CACHE_LIMIT = 100_000


class Pseudonyms:
    """Stable pseudonyms: a keyed HMAC-SHA256 of `kind:value`. The keyed state is made once
    and copied per value (the key is not hashed again), and the pseudonyms of the repeating
    kinds are remembered (a pure function of the key and the value: never stale)."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)
        self._known: dict[tuple[str, str], str] = {}
        self.generalised: dict[str, str] = {}  # generalise's answers (environment values)

    def _digest(self, kind: str, value: str) -> str:
        mac = self._keyed.copy()
        mac.update(f"{kind}:{value}".encode())
        return f"{kind}-{mac.hexdigest()[:16]}"

    def __call__(self, kind: str, value: str | None) -> str | None:
        if value is None:
            return None
        if kind not in CACHED_KINDS:
            return self._digest(kind, value)
        known = self._known.get((kind, value))
        if known is None:
            known = self._digest(kind, value)
            if len(self._known) < CACHE_LIMIT:
                self._known[(kind, value)] = known
        return known


def _day(value: str | None) -> str | None:
    return f"{value[:10]}T00:00:00Z" if value else None


def generalise(value: str, p: Pseudonyms) -> str:
    # Environment values repeat on most cases (regions, versions, hardware): each is
    # generalised once per Pseudonyms (a pure function of the key and the value).
    known = p.generalised.get(value)
    if known is None:
        known = _generalise(value, p)
        if len(p.generalised) < CACHE_LIMIT:
            p.generalised[value] = known
    return known


def _generalise(value: str, p: Pseudonyms) -> str:
    version = VERSION.match(value)
    if version:
        return f"{version.group(1)}.x"
    region = REGION.match(value)
    if region:
        return region.group(1)
    return p("value", value) or ""


def anonymise_case(case: dict[str, Any], profile: str, p: Pseudonyms) -> dict[str, Any]:
    """A wire-format case (with `_meta`) as the profile shows it."""
    if profile == "internal":
        return case
    out = dict(case)
    for key in RAW_PAYLOAD:
        out[key] = None
    out["links"] = []
    for key in FREE_TEXT:
        out[key] = redact_free_text(out.get(key))
    if isinstance(out.get("writeup"), dict):
        out["writeup"] = {k: redact_free_text(v) for k, v in out["writeup"].items()}
    out["external_id"] = p("case", out.get("external_id"))
    out["team"] = p("team", out.get("team"))
    out["fingerprint"] = p("fp", out.get("fingerprint"))
    provenance = out.get("provenance") or {}
    out["provenance"] = {
        k: v
        for k, v in {
            "source": p("source", provenance.get("source")),
            "pipeline_version": provenance.get("pipeline_version"),
            "captured_by": p("actor", provenance.get("captured_by")),
        }.items()
        if v is not None
    }
    out["occurred_at"] = _day(out.get("occurred_at"))
    out["captured_at"] = _day(out.get("captured_at"))
    out["environment"] = {k: generalise(v, p) for k, v in (out.get("environment") or {}).items()}
    meta = dict(out.get("_meta") or {})
    meta["id"] = p("id", meta.get("id"))
    meta["group_id"] = p("id", meta.get("group_id"))
    meta["merged_into_id"] = p("id", meta.get("merged_into_id"))
    meta["content_hash"] = None  # a hash of raw payloads would confirm a guess of them
    meta["received_at"] = _day(meta.get("received_at"))
    meta["updated_at"] = _day(meta.get("updated_at"))
    out["_meta"] = meta
    return out


def anonymise_group(group: dict[str, Any], profile: str, p: Pseudonyms) -> dict[str, Any]:
    if profile == "internal":
        return group
    return {
        **group,
        "id": p("id", group["id"]),
        "fingerprint": p("fp", group["fingerprint"]),
        "first_seen": _day(group.get("first_seen")),
        "last_seen": _day(group.get("last_seen")),
        "resolved_at": _day(group.get("resolved_at")),
        "regressed_at": _day(group.get("regressed_at")),
    }


def _redact_values(value: Any) -> Any:
    if isinstance(value, str):
        return redact_free_text(value)
    if isinstance(value, list):
        return [_redact_values(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_values(v) for k, v in value.items()}
    return value


def anonymise_decision(decision: dict[str, Any], profile: str, p: Pseudonyms) -> dict[str, Any]:
    if profile == "internal":
        return decision
    return {
        **decision,
        "case_id": p("id", decision["case_id"]),
        # A taxonomy's text fields are free text as a summary is (CSETv1's notes, GMF's
        # snippets quote the reports); a code or a number goes through unchanged.
        "values": _redact_values(decision.get("values")),
        "reviewer": p("actor", decision.get("reviewer")),
        "comment": None,
        "at": _day(decision.get("at")),
    }


def anonymise_lesson(lesson: dict[str, Any], profile: str, p: Pseudonyms) -> dict[str, Any]:
    if profile == "internal":
        return lesson
    out = {k: redact_free_text(v) if isinstance(v, str) else v for k, v in lesson.items()}
    out.update(
        id=lesson["id"],
        author=p("actor", lesson.get("author")),
        reviewed_by=p("actor", lesson.get("reviewed_by")),
        evidence_group_ids=[p("id", g) for g in lesson.get("evidence_group_ids", [])],
        created_at=_day(lesson.get("created_at")),
        reviewed_at=_day(lesson.get("reviewed_at")),
    )
    return out


def quasi_identifiers(case: dict[str, Any]) -> tuple[str, ...]:
    model = case.get("model") or {}
    env = case.get("environment") or {}
    return (
        f"{model.get('name')}@{model.get('version')}",
        str(case.get("data_source")),
        str(case.get("occurred_at") or "")[:10],
        ",".join(f"{k}={env[k]}" for k in sorted(env)),
    )


def k_anonymity(classes: Counter[Any]) -> dict[str, Any]:
    """The smallest equivalence class over the quasi-identifiers, and how many cases sit in
    classes smaller than K_THRESHOLD (those a partner could single out most easily)."""
    small = {c: n for c, n in classes.items() if n < K_THRESHOLD}
    return {
        "quasi_identifiers": list(QUASI_IDENTIFIERS),
        "k": min(classes.values()) if classes else None,
        "classes": len(classes),
        "threshold": K_THRESHOLD,
        "classes_below_threshold": len(small),
        "cases_below_threshold": sum(small.values()),
    }
