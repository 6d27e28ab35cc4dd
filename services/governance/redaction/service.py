"""Redaction at ingest and the policies that steer it; the only entry point other packages call.

The catalog's ingest builds one `Redactor` per batch (`redactor_for`, one query for every
policy) and hands it each validated case before anything is stored: the detected values are
replaced in the stored columns (`Redactor.apply` answers the columns to overwrite), so they
never reach the database, the outbox, the search index, logs or the audit trail. What was
found is kept on the case as kinds and JSON paths, never values.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from services.governance.redaction.detectors import (
    Finding,
    detect,
    is_mask,
    is_secret_key,
    maybe_pii,
    worth_scanning,
)
from services.governance.redaction.models import RedactionPolicy
from services.governance.redaction.repository import RedactionRepository
from services.governance.redaction.schemas import (
    Mode,
    Policy,
    PolicyIn,
    RestrictedValue,
    default_policy,
)
from shared.audit import audit
from shared.db import utcnow
from shared.errors import Unavailable
from shared.redaction import payload_level
from shared.security import Principal, Sensitivity

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from shared.db import Database
    from shared.settings import Settings

# The text fields and JSON blobs a case is scanned in, as the catalog stores them.
TEXT_FIELDS = ("title", "summary", "impact")
BLOB_FIELDS = ("writeup", "environment", "input", "prediction", "expected", "signals")
# What one case's findings list keeps at most: kinds and paths for the reader, not an index.
MAX_FINDINGS = 200
MAX_PATH = 300

MASKS = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "iban": "[IBAN]",
    "ipv4": "[IPV4]",
    "ipv6": "[IPV6]",
    "ssn": "[SSN]",
    "secret": "[SECRET]",
    "aws_key": "[AWS_KEY]",
    "jwt": "[JWT]",
    "private_key": "[PRIVATE_KEY]",
}


class _Removed:
    """The walker's answer for a value the `remove` mode drops whole."""


REMOVED = _Removed()


# ---- the instance key (hash mode) ---------------------------------------------------------

KEY_FILE = "redaction.key"
# The key of each Database's engine, installed by whoever built it (the app's lifespan, the
# CLI): ingest reaches it from its session without a global setting.
_KEYS: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def load_key(data_dir: Path) -> bytes:
    """The instance's HMAC key: $FAILCAT_DATA_DIR/redaction.key (32 random bytes, hex, mode
    0600), created on first use. Every process of an instance must share it, as it shares
    the signing keys: equal values hash alike only under one key."""
    path = Path(data_dir) / KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return bytes.fromhex(path.read_text().strip())
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    return key


def install(db: Database, settings: Settings) -> None:
    """Make the instance key available to sessions of `db` (called where `db` is built)."""
    _KEYS[db.engine.sync_engine] = load_key(settings.data_dir)


def _key_of(session: AsyncSession) -> bytes:
    bind = session.bind
    key = _KEYS.get(getattr(bind, "sync_engine", bind))
    if key is None:  # a tool that built its Database without install(): the environment's
        from shared.settings import load_settings

        key = load_key(load_settings().data_dir)
    return key


# ---- policies -----------------------------------------------------------------------------


def _policy(row: RedactionPolicy) -> Policy:
    return Policy(
        row.data_source,
        Mode(row.mode),
        row.payload_sensitivity,
        row.version,
        row.updated_at,
        row.updated_by,
    )


async def policies(session: AsyncSession) -> list[Policy]:
    return sorted(
        (_policy(r) for r in await RedactionRepository(session).policies()),
        key=lambda p: p.data_source,
    )


async def policy_for(session: AsyncSession, data_source: str) -> Policy:
    row = await RedactionRepository(session).policy(data_source)
    return _policy(row) if row is not None else default_policy(data_source)


async def set_policy(session: AsyncSession, data: PolicyIn, actor: Principal) -> Policy:
    """Create or change a data source's policy (applies to cases ingested from now on). The
    policy it already has answers as it is: a version names a change (a case's findings name
    the version that redacted it), so an identical set is none, neither stored nor audited."""
    repo = RedactionRepository(session)
    row = await repo.policy(data.data_source)
    level = data.payload_sensitivity.value if data.payload_sensitivity else None
    if row is not None and (row.mode, row.payload_sensitivity) == (data.mode.value, level):
        return _policy(row)
    if row is None:
        row = RedactionPolicy(data_source=data.data_source, mode=data.mode.value, version=0)
    row.mode, row.payload_sensitivity = data.mode.value, level
    row.version += 1
    row.updated_at, row.updated_by = utcnow(), actor.subject
    await repo.save_policy(row)
    audit(
        session,
        actor,
        "redaction.policy_set",
        f"data_source:{data.data_source}",
        details={"mode": row.mode, "payload_sensitivity": level, "version": row.version},
    )
    return _policy(row)


# ---- ingest -------------------------------------------------------------------------------

_DEFAULT = default_policy("*")


async def redactor_for(session: AsyncSession) -> Redactor:
    """The batch's redactor: every policy (a handful of rows), the instance key."""
    rows = await RedactionRepository(session).policies()
    found = {r.data_source: _policy(r) for r in rows}
    # The key only when a policy hashes: mask (the default) never reads the data dir.
    key = _key_of(session) if any(p.mode is Mode.HASH for p in found.values()) else None
    return Redactor(found, key)


class Redactor:
    def __init__(self, policies: dict[str, Policy], key: bytes | None) -> None:
        self.policies = policies
        self.key = key
        # data source id -> name, filled by `redact_for_case` as an import meets them
        self.source_names: dict[str, str] = {}

    def apply(self, case: Any) -> dict[str, Any]:
        """The stored columns of a validated case (services.catalog.schemas.CaseIn) that
        redaction sets: the redacted text and blobs, `pii_findings` (kinds and paths),
        `pii_restricted` (keep_restricted only) and `payload_sensitivity`."""
        policy = self.policies.get(case.data_source, _DEFAULT)
        wanted = case.payload_sensitivity
        level = policy.payload_sensitivity
        if wanted is not None:
            level = payload_level(wanted.value, level)
        out: dict[str, Any] = {
            "payload_sensitivity": level,
            "pii_findings": None,
            "pii_restricted": None,
        }
        writeup = case.writeup
        blobs = [
            writeup.__dict__ if writeup is not None else None,
            case.environment,
            case.input,
            case.prediction,
            case.expected,
            case.signals,
        ]
        texts = [case.title, case.summary, case.impact]
        links = case.links or []
        # The common case: nothing that even looks like PII: one serialization, a few bytes
        # operations (detectors.worth_scanning).
        keyed = orjson.dumps(blobs)
        titles = [lk.title for lk in links if lk.title]
        if not worth_scanning(orjson.dumps(texts + titles) + keyed, keyed):
            return out
        values = dict(zip(TEXT_FIELDS + BLOB_FIELDS, texts + blobs, strict=True))
        if policy.mode is Mode.HASH and self.key is None:
            raise Unavailable("the redaction key is not loaded: hash-mode policies cannot apply")
        walk = _Walk(policy.mode, self.key)
        for name, value in values.items():
            if value is None:
                continue
            redacted = walk.value(value, name, secret=False)
            if walk.changed:
                out[name] = None if redacted is REMOVED else redacted
                walk.changed = False
        for i, link in enumerate(links):
            # A link's title is free text (an imported reference's label); its URL is typed,
            # and so is a title that is a URL whole (as in imported values, _ImportWalk).
            if not link.title or _URL.fullmatch(link.title):
                continue
            title = walk.text(link.title, f"links[{i}].title", secret=False)
            if walk.changed:
                # Ingest stores links from the validated case, after its content hash was
                # taken: the list takes the redacted link (the model itself is frozen).
                links[i] = link.model_copy(update={"title": None if title is REMOVED else title})
                walk.changed = False
        if walk.findings:
            out["pii_findings"] = [{"kind": k, "path": p} for k, p in walk.findings]
        if walk.restricted:
            out["pii_restricted"] = walk.restricted
        return out


def mask_text(text: str) -> str:
    """Free text with every PII finding masked (the default policy's spelling): for text that
    leaves the instance outside ingest, e.g. a partner bundle's titles and write-ups."""
    masked = _Walk(Mode.MASK, None).text(text, "text", secret=False)
    return text if masked is REMOVED else masked


def redact_edit(
    redactor: Redactor, data_source: str, fields: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A curated edit's free text (title, summary, impact, write-up) through the source's
    policy, as ingest does for a captured case: the fields to store and the new findings
    (kinds and paths). Values other than those keys are returned as they are."""
    policy = redactor.policies.get(data_source, _DEFAULT)
    walk = _Walk(policy.mode, redactor.key)
    out = dict(fields)
    for name in (*TEXT_FIELDS, "writeup"):
        value = fields.get(name)
        if value is None or not maybe_pii(orjson.dumps(value).decode()):
            continue
        redacted = walk.value(value, name, secret=False)
        out[name] = None if redacted is REMOVED else redacted
    return out, [{"kind": k, "path": p} for k, p in walk.findings]


def redact_imported(
    redactor: Redactor, data_source: str, values: dict[str, Any], path: str
) -> tuple[dict[str, Any], list[dict[str, str]], list[dict[str, str]]]:
    """Values that arrive on an existing case from outside ingest (an imported annotation's
    or adjudication's values) through the source's policy, every field free text at any
    depth: the values to store, the findings (kinds and paths under `path`) and, under
    keep_restricted, the raw values the case keeps in `pii_restricted`."""
    serialized = orjson.dumps(values)
    if not worth_scanning(serialized, serialized):
        return values, [], []
    policy = redactor.policies.get(data_source, _DEFAULT)
    if policy.mode is Mode.HASH and redactor.key is None:
        raise Unavailable("the redaction key is not loaded: hash-mode policies cannot apply")
    walk = _ImportWalk(policy.mode, redactor.key)
    out: dict[str, Any] = {}
    for name, value in values.items():
        redacted = walk.value(value, f"{path}.{name}", secret=is_secret_key(name))
        if redacted is not REMOVED:
            out[name] = redacted
    return out, [{"kind": k, "path": p} for k, p in walk.findings], walk.restricted


async def redact_for_case(
    session: AsyncSession,
    case_id: str,
    values: dict[str, Any],
    path: str,
    redactor: Redactor | None = None,
) -> dict[str, Any]:
    """`values` arriving on case `case_id` from an import, through its data source's policy
    (`redact_imported`): the values to store. What was found joins the case's `pii_findings`
    (and `pii_restricted`), and the case is queued for re-indexing (its `pii` field). Pass
    one `redactor` for a whole import to read the policies once."""
    from services.catalog import service as catalog
    from services.catalog.models import FailureCase

    serialized = orjson.dumps(values)
    if not worth_scanning(serialized, serialized):
        return values  # nothing looks like PII: no policy, no case to read
    case = await session.get(FailureCase, case_id)
    if case is None:
        return values
    if redactor is None:
        redactor = await redactor_for(session)
    source = redactor.source_names.get(case.data_source_id)
    if source is None:
        [row] = await catalog.data_sources_by_id(session, [case.data_source_id])
        source = redactor.source_names[case.data_source_id] = row.name
    out, findings, restricted = redact_imported(redactor, source, values, path)
    known = {(f["kind"], f["path"]) for f in case.pii_findings or ()}
    new = [f for f in findings if (f["kind"], f["path"]) not in known]
    if new:
        case.pii_findings = [*(case.pii_findings or ()), *new][:MAX_FINDINGS]
    kept = {(v["kind"], v["path"], v["value"]) for v in case.pii_restricted or ()}
    more = [v for v in restricted if (v["kind"], v["path"], v["value"]) not in kept]
    if more:
        case.pii_restricted = [*(case.pii_restricted or ()), *more]
    if new or more:
        await session.flush()
    if new:
        await catalog.requeue_for_search(session, [case_id])
    return out


class _Walk:
    """One case's walk: replaces what the detectors find, collects (kind, path) pairs."""

    def __init__(self, mode: Mode, key: bytes | None) -> None:
        self.mode, self.key = mode, key
        self.findings: dict[tuple[str, str], None] = {}  # ordered set
        self.restricted: list[dict[str, str]] = []
        self.changed = False

    def value(self, value: Any, path: str, secret: bool) -> Any:
        if isinstance(value, str):
            return self.text(value, path, secret)
        if isinstance(value, dict):
            return self.mapping(value, path, secret)
        if isinstance(value, list):
            out = []
            for i, item in enumerate(value):
                sub = self.value(item, f"{path}[{i}]", secret)
                if sub is not REMOVED:
                    out.append(sub)
            return out
        if secret and isinstance(value, int | float) and not isinstance(value, bool):
            return self.text(str(value), path, secret)  # "password": 1234 is a secret too
        return value

    def mapping(self, value: dict[str, Any], path: str, secret: bool) -> Any:
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key
            if maybe_pii(key):
                name = self.text(key, f"{path}.<key>", False)
                if name is REMOVED:
                    continue
                while name in out:  # two keys masked alike stay two entries
                    name += "'"
            sub = self.value(item, f"{path}.{name}", secret or is_secret_key(key))
            if sub is not REMOVED:
                out[name] = sub
        return out

    def text(self, text: str, path: str, secret: bool) -> Any:
        if secret:
            # An exported case re-ingested, an edit, an import: "[SECRET]" under a secret
            # key was hashed (or recorded as a finding) again as if it were the secret.
            if not text or is_mask(text):
                return text
            found = [Finding("secret", 0, len(text), text)]
        else:
            found = detect(text)
            if not found:
                return text
        self.changed = True
        for f in found:
            self.note(f, path, text)
        if self.mode is Mode.REMOVE and _whole(text, found):
            return REMOVED
        parts, at = [], 0
        for f in found:
            parts.append(text[at : f.start])
            parts.append(self.replacement(f))
            at = f.end
        parts.append(text[at:])
        return "".join(parts)

    def note(self, f: Finding, path: str, text: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings[(f.kind, path[:MAX_PATH])] = None
        if self.mode is Mode.KEEP_RESTRICTED:
            self.restricted.append({"kind": f.kind, "path": path, "value": text[f.start : f.end]})

    def replacement(self, f: Finding) -> str:
        if self.mode is Mode.REMOVE:
            return ""
        if self.mode is Mode.HASH:
            assert self.key is not None
            digest = hmac.new(self.key, f"{f.kind}:{f.normal}".encode(), hashlib.sha256)
            return f"[{f.kind.upper()}:hmac:{digest.hexdigest()[:16]}]"
        if f.kind == "card":
            return f"[CARD ****{f.normal[-4:]}]"
        return MASKS[f.kind]


_URL = re.compile(r"https?://\S+")


class _ImportWalk(_Walk):
    """An imported record's values: a string that is a URL whole is a link (a reference, a
    source), which ingest does not scan either (`links` are typed fields); a mailing-list
    address or a version number inside it is not a person's data."""

    def text(self, text: str, path: str, secret: bool) -> Any:
        if not secret and _URL.fullmatch(text):
            return text
        return super().text(text, path, secret)


def _whole(text: str, found: Iterable[Finding]) -> bool:
    """The findings cover the value but for spaces and punctuation: drop it, not a husk."""
    covered = bytearray(len(text))
    for f in found:
        covered[f.start : f.end] = b"\x01" * (f.end - f.start)
    return all(covered[i] or not text[i].isalnum() for i in range(len(text)))


# ---- reading what keep_restricted kept ------------------------------------------------------


def restricted_values(
    session: AsyncSession, case: Any, reader: Principal
) -> list[RestrictedValue] | None:
    """The raw values a keep_restricted policy kept for `case` (a row `reader` was allowed to
    read): for readers cleared `restricted` only, None for others. Each read is audited."""
    kept = case.pii_restricted
    if reader.clearance is not Sensitivity.RESTRICTED or not kept:
        return None
    audit(
        session,
        reader,
        "redaction.restricted_read",
        f"case:{case.id}",
        details={"values": len(kept)},
    )
    return [RestrictedValue(v["kind"], v["path"], v["value"]) for v in kept]
