"""Signed bundles: cases a query finds (with their groups, adjudicated annotations and the
lessons drawn from those groups) as a tar.gz, with a manifest and a detached JWS over it.

Layout: `manifest.json` (schema version, bundle id, issuer, kid, created at, query, profile,
counts, sha256 of every other file, the k-anonymity report), `manifest.jws` (RFC 7515 compact
serialization with the payload detached: `header..signature`, ES256 by the instance's current
signing key, `kid` as published in its JWKS), `cases.jsonl` (the wire format with `_meta`),
`groups.jsonl`, `annotations.jsonl` (adjudicated decisions), `lessons.jsonl`.

Export streams (services/sharing/pages.py): the cases read a page or two ahead, by keyset from
the catalog (no query) or by the search's ids (a query), as plain rows in short transactions,
and written to files as they come, each file hashed while it is written; nothing holds the
whole set. Import verifies the signature against the keys the operator trusts and every
file's hash before it stores anything; a tampered, unsigned or unknown-key bundle is refused
with one line and nothing stored.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import shutil
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from joserfc import jws
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import ECKey, KeySet

from services.sharing import targz
from services.sharing.anonymise import (
    PROFILES,
    Pseudonyms,
    anonymise_case,
    anonymise_decision,
    anonymise_group,
    anonymise_lesson,
    k_anonymity,
    quasi_identifiers,
)
from services.sharing.importing import listed_errors
from services.sharing.schemas import LessonStatus
from services.sharing.targz import MemberWriter
from shared.audit import audit
from shared.errors import BadUserInput, FieldError
from shared.ids import new_id
from shared.security import Principal, Sensitivity

SCHEMA_VERSION = 1
ALG = "ES256"
FILES = ("cases.jsonl", "groups.jsonl", "annotations.jsonl", "lessons.jsonl")
MANIFEST, SIGNATURE = "manifest.json", "manifest.jws"
PAGE = 500
YIELD_EVERY = 50  # cases rendered between two turns of the event loop
MAX_MEMBER_BYTES = 2 * 1024**3
MAX_LESSON_TITLE = 300  # LessonIn's and sharing_lesson.title's
MAX_BUNDLE_ID = 36  # sharing_bundle.bundle_id: an id of ours is a UUID


class BundleRefused(BadUserInput):
    """A bundle that does not verify: nothing of it is stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"bundle refused: {reason}", [FieldError("bundle", reason)])


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def group_json(group: Any) -> dict[str, Any]:
    return {
        "id": group.id,
        "fingerprint": group.fingerprint,
        "failure_mode": group.failure_mode,
        "status": group.status,
        "case_count": group.case_count,
        "first_seen": _iso(group.first_seen),
        "last_seen": _iso(group.last_seen),
        "resolved_in_version": group.resolved_in_version,
        "resolved_at": _iso(group.resolved_at),
        "regressed_at": _iso(group.regressed_at),
        "regressed_in_version": group.regressed_in_version,
    }


def lesson_json(lesson: Any) -> dict[str, Any]:
    return {
        "id": lesson.id,
        "title": lesson.title,
        "what_happened": lesson.what_happened,
        "why_it_matters": lesson.why_it_matters,
        "mitigation": lesson.mitigation,
        "cost": lesson.cost,
        "evidence_group_ids": list(lesson.evidence_group_ids),
        "suites": list(lesson.suites),
        "status": lesson.status,
        "author": lesson.author,
        "reviewed_by": lesson.reviewed_by,
        "created_at": _iso(lesson.created_at),
        "reviewed_at": _iso(lesson.reviewed_at),
    }


@dataclass
class Written:
    manifest: dict[str, Any]
    teams: list[str]
    max_sensitivity: str


@contextmanager
def collector_settled() -> Iterator[None]:
    """Around an export in a process that runs little else (`failcat export bundle`): the
    objects the process holds before it are out of the garbage collector's sight meanwhile
    (gc.freeze), and back after (gc.unfreeze: nothing is kept for good). An export allocates
    a few containers per case, and each of the collector's full passes walked the whole
    process (modules, SQL metadata: ~160,000 objects), ~0.2 s a pass, six passes per 20,000
    cases; frozen, a pass walks the export's own objects."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def check_destination(out: Path) -> None:
    """Before an export starts: `out` can be written (a missing folder or a directory would
    fail only at the end, naming a temporary file of ours)."""
    problem = None
    if out.is_dir():
        problem = f"{out} is a directory"
    elif not out.parent.is_dir():
        problem = f"{out}: no directory {out.parent}"
    if problem:
        raise BadUserInput(f"--out {problem}", [FieldError("out", problem)])


async def write_bundle(
    search: Any,
    db: Any,
    principal: Principal,
    query: str,
    profile: str,
    out: Path,
    *,
    issuer: str,
    kid: str,
    key: ECKey,
    pseudonyms: Pseudonyms,
    progress: Callable[[int, int], None] | None = None,
) -> Written:
    """Write the bundle to `out` (a tar.gz) and answer its manifest."""
    from services.catalog import service as catalog
    from services.sharing import pages
    from services.sharing.repository import SharingRepository
    from shared.visibility import Visibility

    if profile not in PROFILES:
        raise BadUserInput("unknown profile", [FieldError("profile", f"one of {PROFILES}")])
    public = profile == "public"
    query = query.strip()  # a blank one is no query (the public profile wraps a query in '()')
    # No query: every live case the reader may see, read from the catalog by keyset; the
    # search (and its index) is not asked. A query: the search's ids, read by id.
    request = None
    if query:
        # Parsed as given first: a mistake is reported at its column in the caller's query,
        # not in the public profile's wrapping of it (shifted, or at the wrapper's parenthesis).
        search.build_request(principal, query, first=PAGE, sort="occurred_at")
        effective = f"({query}) sensitivity:public" if public else query
        request = replace(
            search.build_request(principal, effective, first=PAGE, sort="occurred_at"),
            highlight=False,
        )
    bundle_id = new_id()
    work = Path(tempfile.mkdtemp(prefix="failcat-bundle-", dir=out.parent))
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-gzip")
    writers = {name: MemberWriter(work / f"{name}.gz", pool) for name in FILES}
    cases_out, decisions_out = writers["cases.jsonl"], writers["annotations.jsonl"]
    # An equivalence class by a 16-byte digest of its quasi-identifiers: only the sizes are
    # reported, and a bundle can have as many classes as cases.
    classes: Counter[bytes] = Counter()
    group_ids: set[str] = set()
    teams: set[str] = set()
    levels: set[str] = set()
    done = 0
    try:
        async for page in pages.export_pages(
            db,
            principal,
            search=search,
            request=request,
            public_only=public,
            raw=profile == "internal",  # the others drop raw payloads and links
        ):
            rows = [r for r in page.rows if not public or r["sensitivity"] == "public"]
            # Each page's read is in the audit trail, committed before its cases are written,
            # as `cases.export` records its pages.
            async with db.transaction() as session:
                audit(
                    session,
                    principal,
                    "sharing.export_bundle_read",
                    f"bundle:{bundle_id}",
                    details={"profile": profile, "ids": [r["id"] for r in rows]},
                    read=True,
                )
            refs, decisions = page.refs, page.decisions
            for i, row in enumerate(rows):
                if i % YIELD_EVERY == 0:
                    # The pages ahead are read by a task on this loop, one round trip at a
                    # time (begin, statement, commit...): without a turn now and then it
                    # would wait for this whole page's rendering at each of them, and the
                    # writer then for its next page (half an export's time on Postgres).
                    await asyncio.sleep(0)
                wire = pages.wire_row(row, refs, principal)
                group_ids.add(row["group_id"])
                teams.add(row["team"])
                levels.add(row["sensitivity"])
                shown = anonymise_case(wire, profile, pseudonyms)
                qi = orjson.dumps(quasi_identifiers(shown))
                classes[hashlib.blake2b(qi, digest_size=16).digest()] += 1
                cases_out.write(shown)
                for entry in decisions.get(row["id"], ()):
                    if entry.hidden:
                        continue
                    decision = {
                        "case_id": row["id"],
                        "taxonomy": entry.taxonomy,
                        "values": entry.values,
                        "reviewer": entry.actor,
                        "comment": entry.comment,
                        "at": _iso(entry.at),
                    }
                    decisions_out.write(anonymise_decision(decision, profile, pseudonyms))
            done += page.covered
            if progress:
                progress(done, page.total)
        group_ids.discard(None)
        teams.discard(None)
        worst = max(map(Sensitivity, levels), key=lambda s: s.rank, default=Sensitivity.PUBLIC)
        hidden: dict[str, int] = {}
        # A group's count is of the cases this reader may see, as GraphQL's caseCount is (of
        # the public ones, for the public profile): the stored one would tell a partner how
        # many cases the bundle left out.
        counted = replace(principal, clearance=Sensitivity.PUBLIC) if public else principal
        if not Visibility.of(counted).sees_everything:
            async with db.transaction() as session:
                hidden = await catalog.hidden_case_counts(session, list(group_ids), counted)
        async for group in pages.group_rows(db, list(group_ids)):
            shown = group_json(group)
            shown["case_count"] -= hidden.get(group.id, 0)
            writers["groups.jsonl"].write(anonymise_group(shown, profile, pseudonyms))
        async with db.transaction() as session:
            # Lessons drawn only from groups in the bundle travel with it (reviewed or not:
            # the status says which).
            for lesson in await SharingRepository(session).lessons([], None, 10_000, None):
                if lesson.evidence_group_ids and set(lesson.evidence_group_ids) <= group_ids:
                    writers["lessons.jsonl"].write(
                        anonymise_lesson(lesson_json(lesson), profile, pseudonyms)
                    )
        hashes = {name: w.close() for name, w in writers.items()}
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "bundle_id": bundle_id,
            "issuer": issuer,
            "kid": kid,
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "query": query,
            "profile": profile,
            "counts": {
                "cases": writers["cases.jsonl"].count,
                "groups": writers["groups.jsonl"].count,
                "annotations": writers["annotations.jsonl"].count,
                "lessons": writers["lessons.jsonl"].count,
            },
            "files": {name: {"sha256": digest} for name, digest in hashes.items()},
            "k_anonymity": k_anonymity(classes),
        }
        manifest_bytes = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS)
        signature = sign(manifest_bytes, kid, key)
        targz.pack(
            out,
            [(MANIFEST, manifest_bytes), (SIGNATURE, signature.encode())],
            [(name, writers[name]) for name in FILES],
        )
        return Written(manifest, sorted(teams), worst.value)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # nothing writes the files after this
        for w in writers.values():
            w.abandon()
        shutil.rmtree(work, ignore_errors=True)


def sign(manifest: bytes, kid: str, key: ECKey) -> str:
    """A detached compact JWS over the manifest's bytes (RFC 7515 appendix F)."""
    compact = jws.serialize_compact({"alg": ALG, "kid": kid}, manifest, key, algorithms=[ALG])
    return jws.detach_content(compact)


def _header_kid(header: str) -> str | None:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return value.get("kid") if isinstance(value, dict) else None


def verify(manifest: bytes, signature: str, trusted: KeySet) -> str:
    """The kid that signed the manifest, or BundleRefused."""
    parts = signature.strip().split(".")
    if len(parts) != 3 or parts[1]:
        raise BundleRefused("manifest.jws is not a detached compact JWS")
    try:
        obj = jws.deserialize_compact(
            signature.strip(), trusted, algorithms=[ALG], payload=manifest
        )
    except InvalidKeyIdError:
        raise BundleRefused(
            "the signature does not verify with a trusted key (it names key "
            f"{_header_kid(parts[0])!r}, which --trust does not hold)"
        ) from None
    except JoseError as exc:
        reason = (
            "the manifest was changed after signing, or another key signed it"
            if isinstance(exc, BadSignatureError)
            else exc.error
        )
        raise BundleRefused(
            f"the signature does not verify with a trusted key ({reason})"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise BundleRefused("the signature does not verify with a trusted key") from None
    return str(obj.headers().get("kid"))


@dataclass
class Verified:
    manifest: dict[str, Any]
    manifest_sha256: str
    kid: str
    files: dict[str, list[dict[str, Any]]]  # each file's records, checked by read_bundle
    lines: dict[str, list[int]]  # the line of each of those records in its file

    def records(self, name: str) -> list[dict[str, Any]]:
        return self.files[name]


# What import_verified reads of each record without a default: a record of another shape is
# refused before anything is stored (a case's own fields are the catalog's ingest's to check).
RECORD_SHAPES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "cases.jsonl": {"_meta": (dict, type(None))},
    "groups.jsonl": {},
    "annotations.jsonl": {"values": (dict, type(None)), "taxonomy": (str, type(None))},
    "lessons.jsonl": {
        "id": str,
        "title": str,
        "what_happened": str,
        "why_it_matters": str,
        "mitigation": str,
        "cost": str,
        "evidence_group_ids": list,
    },
}
MANIFEST_SHAPE: dict[str, type] = {"bundle_id": str, "issuer": str, "files": dict}


_KIND_NAMES = {dict: "an object", str: "a text", list: "a list"}


def _shape_error(record: Any, shape: dict[str, Any], optional: set[str]) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    for key, kind in shape.items():
        if key not in record and key in optional:
            continue
        if key not in record:
            return f"{key}: missing"
        if not isinstance(record[key], kind):
            first = kind[0] if isinstance(kind, tuple) else kind
            return f"{key}: not {_KIND_NAMES.get(first, first.__name__)}"
    return None


def _nul_path(value: Any, path: str = "") -> str | None:
    """The path of the first text (or object key) in `value` holding a NUL, else None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if not isinstance(value, dict | list):
        return None  # a number, a bool, null: no text
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and "\x00" in key:
            return where
        found = _nul_path(item, where)
        if found:
            return found
    return None


def _lesson_error(lesson: dict[str, Any]) -> str | None:
    """A lesson is stored as sent: a status this instance has no word for (the GraphQL type
    is an enum of them), or a reviewer longer than its column, could not be shown or stored."""
    if not all(isinstance(g, str) for g in lesson["evidence_group_ids"]):
        return "evidence_group_ids: not a list of group ids"
    statuses = [s.value for s in LessonStatus]
    if lesson.get("status") not in (None, *statuses):
        return f"status: one of {', '.join(statuses)}"
    reviewer = lesson.get("reviewed_by")
    if reviewer is not None and not (isinstance(reviewer, str) and len(reviewer) <= 200):
        return "reviewed_by: a text of at most 200 characters"
    return None


def _records(name: str, content: bytes) -> tuple[list[dict[str, Any]], list[int]]:
    """A JSON-lines file of the bundle, each line an object of its file's shape, and their
    lines; else the bundle is refused naming the file and line."""
    out, lines = [], []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BundleRefused(f"{name}:{number}: not JSON ({exc.msg})") from None
        problem = _shape_error(
            record, RECORD_SHAPES[name], optional={"_meta", "values", "taxonomy"}
        )
        if not problem and name == "lessons.jsonl":
            problem = _lesson_error(record)
        if not problem and name in ("annotations.jsonl", "lessons.jsonl"):
            # Stored as sent (the catalog's ingest checks a case's own): Postgres refuses a
            # NUL in text and in JSON.
            where = _nul_path(record)
            problem = f"{where}: holds a NUL character" if where else None
        if problem:
            raise BundleRefused(f"{name}:{number}: {problem}")
        out.append(record)
        lines.append(number)
    return out, lines


def _verify_members(members: dict[str, bytes], trusted: KeySet) -> str:
    return verify(members[MANIFEST], members[SIGNATURE].decode(errors="replace"), trusted)


def read_bundle(path: Path, trusted: KeySet) -> Verified:
    """Open a bundle and check it whole: the signature over the manifest, then every file's
    sha256 against it, and no file the manifest does not name. Raises BundleRefused."""
    members: dict[str, bytes] = {}
    kid = None
    try:
        with tarfile.open(path, "r:gz") as tar:
            for info in tar:
                # `tar -czf b.tar.gz -C unpacked .` (a bundle unpacked to look at and packed
                # again) names its members ./cases.jsonl ... after a ./ directory: the same files.
                name = info.name.removeprefix("./")
                if info.isdir() and name in (".", ""):
                    continue
                if not info.isfile() or name not in (MANIFEST, SIGNATURE, *FILES):
                    raise BundleRefused(f"unexpected member {info.name!r}")
                if name in members:
                    raise BundleRefused(f"member {name!r} is repeated")
                if info.size > MAX_MEMBER_BYTES:
                    raise BundleRefused(
                        f"member {name!r} is {info.size:,} bytes, over the limit of "
                        f"{MAX_MEMBER_BYTES:,} bytes a file"
                    )
                handle = tar.extractfile(info)
                members[name] = handle.read() if handle else b""
                if kid is None and MANIFEST in members and SIGNATURE in members:
                    # Checked as soon as it can be (an exporter writes both first): a bundle
                    # no trusted key signed is refused before its files are read into memory.
                    kid = _verify_members(members, trusted)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleRefused(f"not a readable tar.gz ({exc})") from None
    if SIGNATURE not in members:
        raise BundleRefused("unsigned: manifest.jws is missing")
    if MANIFEST not in members:
        raise BundleRefused("manifest.json is missing")
    kid = kid or _verify_members(members, trusted)
    # Signed is not well-formed: a partner's exporter may have a bug of its own.
    try:
        manifest = orjson.loads(members[MANIFEST])
    except orjson.JSONDecodeError as exc:
        raise BundleRefused(f"{MANIFEST}: not JSON ({exc.msg})") from None
    problem = _shape_error(manifest, MANIFEST_SHAPE, optional=set())
    for key in ("bundle_id", "issuer"):
        if not problem and not manifest[key].strip():
            problem = f"{key}: empty"
        # Both are stored as names (the cases' provenance source, the bundle's record): a
        # control character (a NUL Postgres refuses) would fail every case on it.
        if not problem and any(ord(c) < 32 for c in manifest[key]):
            problem = f"{key}: holds a control character"
    if not problem and len(manifest["bundle_id"]) > MAX_BUNDLE_ID:
        problem = f"bundle_id: longer than {MAX_BUNDLE_ID} characters"  # the column's width
    if problem:
        raise BundleRefused(f"{MANIFEST}: {problem}")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise BundleRefused(f"schema version {manifest.get('schema_version')} is not supported")
    named = manifest.get("files") or {}
    if set(named) != set(FILES) or set(members) - {MANIFEST, SIGNATURE} != set(FILES):
        # Which file, and on which side: the bundle's own list or the manifest's.
        absent = sorted(set(FILES) - set(members))
        unlisted = sorted(set(FILES) - set(named))
        extra = sorted(set(named) - set(FILES))
        problem = (
            f"{', '.join(absent)} missing"
            if absent
            else f"the manifest does not list {', '.join(unlisted)}"
            if unlisted
            else f"the manifest lists {', '.join(extra)}, which a bundle does not hold"
        )
        raise BundleRefused(f"the files do not match the manifest: {problem}")
    for name in FILES:
        entry = named[name] if isinstance(named[name], dict) else {}
        if hashlib.sha256(members[name]).hexdigest() != entry.get("sha256"):
            raise BundleRefused(f"{name}: sha256 differs from the manifest")
    parsed = {name: _records(name, members[name]) for name in FILES}
    return Verified(
        manifest,
        hashlib.sha256(members[MANIFEST]).hexdigest(),
        kid,
        {name: records for name, (records, _) in parsed.items()},
        {name: lines for name, (_, lines) in parsed.items()},
    )


def trusted_keys(source: str, fetch: Callable[[str], bytes] | None = None) -> KeySet:
    """The keys to trust: a JWKS URL (fetched), or a file holding a JWKS or one JWK."""
    if source.startswith(("http://", "https://")):
        if fetch is None:
            import httpx

            def fetch(url: str) -> bytes:
                resp = httpx.get(url, timeout=10.0)
                resp.raise_for_status()
                return resp.content

        raw = fetch(source)
    else:
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            reason = f"{source}: {exc.strerror or exc}"  # the CLI's line shows the field's
            raise BadUserInput(f"--trust {reason}", [FieldError("trust", reason)]) from None
    try:
        data = orjson.loads(raw)
        keys = data["keys"] if isinstance(data, dict) and "keys" in data else [data]
        # A JSON array, or a "keys" that is not a list of objects, is no JWKS either.
        if not isinstance(keys, list) or not all(isinstance(key, dict) for key in keys):
            raise ValueError('expected a JWK object or {"keys": [JWK objects]}')
        public = [{k: v for k, v in key.items() if k != "d"} for key in keys]
        return KeySet.import_key_set({"keys": public})
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, JoseError) as exc:
        raise BadUserInput(
            f"--trust {source}: not a JWKS or JWK", [FieldError("trust", str(exc))]
        ) from None


# --- import ------------------------------------------------------------------------------------
# What a case's edit can change (the catalog's CasePatch, and status): captured facts cannot be
# edited, so a case shared again after an edit at its source differs from its copy in these.
CURATED = (
    "title",
    "summary",
    "failure_mode",
    "severity",
    "impact",
    "status",
    "tags",
    "sensitivity",
    "team",
    "links",
    "writeup",
)


def _comparable(value: Any) -> Any:
    # Stored sub-fields that are null are absent on the wire; a link's id is this instance's.
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if v is not None and k != "id"}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def shared_again_error(record: dict[str, Any], copy: dict[str, Any], issuer: str) -> dict[str, str]:
    """The error of a bundle case whose copy here was imported from an earlier version of it.

    The copy is kept: the importer cannot tell whether this version is newer than the one it
    holds (an older bundle may be imported after a newer one) nor which of the copy's values
    were edited here since, so neither side's edits are overwritten without a person."""
    meta = record.get("_meta") or {}
    theirs = {**record, "status": meta.get("status")}
    differ = [f for f in CURATED if _comparable(theirs.get(f)) != _comparable(copy.get(f))]
    at_source = f"revision {meta['revision']} at {issuer}" if meta.get("revision") else issuer
    edited = (
        f"; the copy was edited here since (revision {copy['revision']})"
        if (copy.get("revision") or 1) > 1
        else ""
    )
    if differ:
        what = f"differs from it in {', '.join(differ)}"
        todo = f"to take their version, edit case {copy['id']} here"
    else:
        what = (
            "matches it in every field an edit can change (it differs in what was imported first)"
        )
        todo = "nothing to apply"
    return {
        "path": differ[0] if differ else "external_id",
        "message": f"case {copy['id']} here is this case's copy, imported from an earlier "
        f"version of it; this version ({at_source}) {what}{edited}. The copy is kept as it is "
        f"(an import never overwrites a case): {todo}",
    }


def origin_source(issuer: str) -> str:
    """The provenance source of a bundle's cases at the importer: its issuer."""
    return f"bundle:{issuer}"[:200]


async def import_verified(
    session: Any, bundle: Verified, actor: Principal, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Store a verified bundle: cases through the catalog's ingest (the origin as provenance,
    idempotent by external id), adjudicated decisions through the annotation service's import
    path (taxonomies this instance has), lessons with their evidence re-linked."""
    from services.annotation import service as annotations
    from services.catalog import service as catalog
    from services.sharing.models import Bundle, Lesson
    from services.sharing.repository import SharingRepository
    from shared.audit import audit
    from shared.db import utcnow
    from shared.ids import stable_id

    manifest = bundle.manifest
    issuer, bundle_id = str(manifest["issuer"]), str(manifest["bundle_id"])
    source = origin_source(issuer)
    repo = SharingRepository(session)
    # Its own bundle's cases are here already: imported, each would be a second copy (their
    # pseudonymised external ids match nothing here). The issuer cannot tell (instances left
    # at the default issuer share it); the export's record of the bundle id can.
    if await repo.bundle(bundle_id, "export") is not None:
        raise BundleRefused(f"bundle {bundle_id} was exported by this instance")
    counts: dict[str, int] = {}
    errors: list[str] = []  # a case not stored, by its line: "cases.jsonl:7: severity: ..."
    new_ids: dict[str, str] = {}  # the bundle's case id -> this instance's
    records = bundle.records("cases.jsonl")
    lines = bundle.lines["cases.jsonl"]
    for start in range(0, len(records), PAGE):
        batch = records[start : start + PAGE]
        items = []
        for record in batch:
            meta = record.get("_meta") or {}
            case = {k: v for k, v in record.items() if k != "_meta"}
            case["external_id"] = case.get("external_id") or meta.get("id")
            kept = case.get("provenance") or {}
            # No batch_id of the bundle: the content hash covers provenance, so each later
            # bundle of the same case would make it a conflict, not a duplicate (the bundle
            # that brought it is in sharing_bundle and the audit trail).
            case["provenance"] = {
                "source": source,
                **{k: kept[k] for k in ("pipeline_version", "captured_by") if kept.get(k)},
            }
            items.append(case)
        results = await catalog.ingest_cases(session, items, actor)
        copies = await catalog.cases_as_json(
            session, [r.id for r in results if r.status == "conflict" and r.id], actor
        )
        for line, record, result in zip(lines[start : start + PAGE], batch, results, strict=True):
            counts[result.status] = counts.get(result.status, 0) + 1
            found = result.errors or []
            if result.status == "conflict" and result.id in copies:
                # The catalog's answer speaks to a producer who chose the external id; here the
                # issuer chose it, and the case was edited at the source since it was shared.
                found = [shared_again_error(record, copies[result.id], issuer)]
            for error in found:
                errors.append(f"cases.jsonl:{line}: {error['path']}: {error['message']}")
            if result.id and result.status in ("created", "duplicate"):
                new_ids[str((record.get("_meta") or {}).get("id"))] = result.id
        if progress:
            progress(f"bundle cases {min(start + PAGE, len(records))}/{len(records)}")
    decided = skipped = 0
    taxonomies: dict[str, Any] = {}
    decision_lines = bundle.lines["annotations.jsonl"]
    for line, decision in zip(decision_lines, bundle.records("annotations.jsonl"), strict=True):
        case_id = new_ids.get(str(decision.get("case_id")))
        name = decision.get("taxonomy")
        missing = (
            "taxonomy: missing"
            if not name
            else f"case_id: {decision.get('case_id')}: no case of cases.jsonl was stored under it"
            if case_id is None
            else None
        )
        if missing:
            # Counted and named like any other skipped decision, never dropped unsaid.
            skipped += 1
            errors.append(f"annotations.jsonl:{line}: {missing}")
            continue
        if name not in taxonomies:
            try:
                taxonomies[name] = await annotations.get_taxonomy(session, name)
            except BadUserInput as exc:
                skipped += 1
                known = "; ".join(e.message for e in exc.errors)
                errors.append(f"annotations.jsonl:{line}: taxonomy: {exc.message} ({known})")
                continue
        try:
            changed = await annotations.record_adjudicated(
                session,
                case_id,
                taxonomies[name],
                decision.get("values") or {},
                reviewer=str(decision.get("reviewer") or issuer)[:200],
                actor=actor,
            )
        except BadUserInput as exc:
            # A taxonomy (or version of it) this instance does not have, or values it refuses:
            # skipped, and said why.
            skipped += 1
            why = "; ".join(f"{e.path}: {e.message}" for e in exc.errors) or exc.message
            errors.append(f"annotations.jsonl:{line}: {why}")
            continue
        decided += changed
    # Groups formed again here from the fingerprints: a bundle group is the group of its cases.
    group_of: dict[str, str] = {}
    by_new = {v: k for k, v in new_ids.items()}
    stored = await catalog.get_cases(session, list(by_new), actor)
    source_group = {
        str((r.get("_meta") or {}).get("id")): (r.get("_meta") or {}).get("group_id")
        for r in records
    }
    for case in stored:
        origin = source_group.get(by_new[case.id])
        if origin and case.group_id:
            group_of[str(origin)] = case.group_id
    lessons = 0
    lesson_lines = bundle.lines["lessons.jsonl"]
    for line, lesson in zip(lesson_lines, bundle.records("lessons.jsonl"), strict=True):
        if not lesson["title"].strip() or len(lesson["title"]) > MAX_LESSON_TITLE:
            # As createLesson refuses it (cut to fit, it would change without a word; the
            # partner profile's masks can lengthen a title): this lesson is left out, said why.
            errors.append(f"lessons.jsonl:{line}: title: 1 to {MAX_LESSON_TITLE} characters")
            continue
        lesson_id = stable_id(f"{issuer}:lesson:{lesson['id']}")
        groups = [group_of[g] for g in lesson.get("evidence_group_ids", []) if g in group_of]
        if await repo.lesson(lesson_id) is not None or len(groups) < 2:
            continue
        await repo.add(
            Lesson(
                id=lesson_id,
                title=lesson["title"],
                what_happened=lesson["what_happened"],
                why_it_matters=lesson["why_it_matters"],
                mitigation=lesson["mitigation"],
                cost=lesson["cost"],
                evidence_group_ids=groups,
                suites=[],  # suites are this instance's own: a partner's do not exist here
                status=lesson.get("status") or "draft",
                author=str(lesson.get("author") or issuer)[:200],
                author_name=None,
                created_at=utcnow(),
                reviewed_by=lesson.get("reviewed_by"),
                reviewed_at=utcnow() if lesson.get("reviewed_by") else None,
            )
        )
        lessons += 1
    if await repo.bundle(bundle_id, "import") is None:
        await repo.add(
            Bundle(
                id=new_id(),
                bundle_id=bundle_id,
                direction="import",
                issuer=issuer[:500],
                kid=bundle.kid[:200],
                profile=str(manifest.get("profile")),
                query=str(manifest.get("query") or ""),
                manifest=manifest,
                manifest_sha256=bundle.manifest_sha256,
                teams=[],
                max_sensitivity="restricted",
                created_by=actor.subject,
                created_at=utcnow(),
            )
        )
    summary = {
        "bundle_id": bundle_id,
        "issuer": issuer,
        "kid": bundle.kid,
        "cases": counts,
        "adjudicated": decided,
        "annotations_skipped": skipped,
        "lessons": lessons,
        **listed_errors(errors),
    }
    audit(
        session,
        actor,
        "sharing.import_bundle",
        f"bundle:{bundle_id}",
        details={"cases": len(records), "adjudicated": decided, "lessons": lessons},
    )
    return summary
