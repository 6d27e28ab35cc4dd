"""CLI of the sharing service: `failcat export avid|bundle`, `failcat import avid|atlas|bundle`.

Operator commands on the host (the principal is SYSTEM, as for `failcat import aiid`). An
import is one transaction: an interrupted import leaves nothing half-imported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from services.cli.errors import CliError
from shared.settings import load_settings


def read_records(
    path: Path, check: Callable[[dict[str, Any]], str | None] | None = None
) -> list[dict[str, Any]]:
    """A JSON array, or one JSON object per line (blank lines skipped). `check(record)` says
    why a record is not of the importer's kind (None: it is): such a file (often another
    importer's) is refused by its first bad record's line before anything is stored."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None
    located: list[tuple[str, Any]] = []  # (where, record): the line, or the array's item
    if raw.lstrip().startswith(b"["):
        try:
            records = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CliError(f"{path}: not JSON: {exc}") from None
        located = [(f"{path}: record {n}", r) for n, r in enumerate(records, start=1)]
    else:
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                located.append((f"{path}:{number}", orjson.loads(line)))
            except orjson.JSONDecodeError as exc:
                raise CliError(f"{path}:{number}: {_not_json(line, exc)}") from None
    for where, record in located:
        if not isinstance(record, dict):
            raise CliError(f"{where}: not a JSON object")
        problem = check(record) if check is not None else None
        if problem:
            raise CliError(f"{where}: {problem}")
    return [record for _, record in located]


def _not_json(line: bytes, exc: orjson.JSONDecodeError) -> str:
    """Why a line is not JSON; bytes that are not UTF-8 by byte and column (orjson says only
    'str is not valid UTF-8: surrogates not allowed')."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        column = len(line[: bad.start].decode("utf-8", "replace")) + 1
        return (
            f"not UTF-8 text: byte 0x{line[bad.start]:02x} at column {column} "
            "(save the file as UTF-8)"
        )
    return f"not JSON: {exc.msg}"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_import(
    importer: Callable[[Any, list[dict[str, Any]], Any, Any], Awaitable[dict[str, Any]]],
    path: Path,
    action: str,
    check: Callable[[dict[str, Any]], str | None],
) -> int:
    from shared.audit import audit
    from shared.db import Database
    from shared.security import SYSTEM

    records = read_records(path, check)
    settings = load_settings()

    async def run() -> dict[str, Any]:
        db = Database(settings.catalog_url)
        try:
            async with db.transaction() as session:
                summary = await importer(session, records, SYSTEM, _progress)
                audit(
                    session,
                    SYSTEM,
                    action,
                    f"file:{path.name}",
                    details={"records": len(records), **summary["cases"]},
                )
                return summary
        finally:
            await db.dispose()

    summary = asyncio.run(run())
    print(orjson.dumps(summary).decode())
    return 1 if summary["cases"].get("invalid") else 0


def cmd_import_avid(args: argparse.Namespace) -> int:
    from services.sharing.avid import import_reports, not_a_report

    return _run_import(import_reports, Path(args.file), "sharing.import_avid", not_a_report)


def cmd_import_atlas(args: argparse.Namespace) -> int:
    from services.sharing.atlas import import_case_studies, not_a_study

    return _run_import(import_case_studies, Path(args.file), "sharing.import_atlas", not_a_study)


def cmd_export_avid(args: argparse.Namespace) -> int:
    from services.search.service import SearchService
    from services.sharing.avid import stream_reports
    from shared.audit import audit
    from shared.db import Database
    from shared.security import SYSTEM

    settings = load_settings()
    out = Path(args.out) if args.out else None
    partial = out.with_name(out.name + ".partial") if out else None

    async def run(sink: Any) -> int:
        db = Database(settings.catalog_url)
        search = await SearchService.start(settings, db)
        try:
            # The host's operator exports what the catalog holds: catch the index up with
            # changes no worker has indexed yet (idempotent, as the worker's own drain).
            await search.drain_outbox()
            await search.backend.refresh()
            count = 0
            async for report in stream_reports(search, db, SYSTEM, args.query):
                sink.write(orjson.dumps(report) + b"\n")
                count += 1
            async with db.transaction() as session:
                audit(session, SYSTEM, "sharing.export_avid", None, details={"reports": count})
            return count
        finally:
            await search.close()
            await db.dispose()

    if partial is None:
        count = asyncio.run(run(sys.stdout.buffer))
        sys.stdout.buffer.flush()
    else:
        try:
            with partial.open("wb") as fh:
                count = asyncio.run(run(fh))
            os.replace(partial, out)  # type: ignore[arg-type]
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
    print(f"failcat: exported {count} AVID reports", file=sys.stderr)
    return 0


async def _signer(settings: Any, db: Any) -> tuple[str, Any]:
    """The instance's current signing key (the one its JWKS publishes), as the auth service
    loads it for tokens."""
    from services.auth.service import AuthService

    async with db.transaction() as session:
        ring = await AuthService(settings, db).key_store.load(session)
    [key] = ring.signing_keys.keys
    return ring.signing_kid, key


def cmd_export_bundle(args: argparse.Namespace) -> int:
    from services.search.service import SearchService
    from services.sharing.anonymise import Pseudonyms, pseudonym_key
    from services.sharing.bundle import check_destination, collector_settled, write_bundle
    from services.sharing.models import Bundle
    from services.sharing.repository import SharingRepository
    from shared.audit import audit
    from shared.db import Database, utcnow
    from shared.ids import new_id
    from shared.security import SYSTEM

    settings = load_settings()
    out = Path(args.out).resolve()
    check_destination(out)
    partial = out.with_name(out.name + ".partial")

    def show(done: int, total: Any) -> None:
        print(f"bundled {done}/{total} cases", file=sys.stderr, flush=True)

    async def run() -> dict[str, Any]:
        db = Database(settings.catalog_url)
        search = await SearchService.start(settings, db)
        try:
            if args.query:  # no query reads the catalog, not the index (bundle.write_bundle)
                await search.drain_outbox()
                await search.backend.refresh()
            kid, key = await _signer(settings, db)
            with collector_settled():
                written = await write_bundle(
                    search,
                    db,
                    SYSTEM,
                    args.query,
                    args.profile,
                    partial,
                    issuer=settings.issuer,
                    kid=kid,
                    key=key,
                    pseudonyms=Pseudonyms(pseudonym_key(settings.data_dir, dict(os.environ))),
                    progress=show,
                )
            os.replace(partial, out)
            manifest = written.manifest
            async with db.transaction() as session:
                await SharingRepository(session).add(
                    Bundle(
                        id=new_id(),
                        bundle_id=manifest["bundle_id"],
                        direction="export",
                        issuer=settings.issuer,
                        kid=kid,
                        profile=args.profile,
                        query=args.query,
                        manifest=manifest,
                        manifest_sha256=hashlib.sha256(
                            orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS)
                        ).hexdigest(),
                        path=str(out),
                        teams=written.teams,
                        max_sensitivity=written.max_sensitivity,
                        created_by=SYSTEM.subject,
                        created_at=utcnow(),
                    )
                )
                audit(
                    session,
                    SYSTEM,
                    "sharing.export_bundle",
                    f"bundle:{manifest['bundle_id']}",
                    details={"profile": args.profile, **manifest["counts"]},
                )
            return manifest
        finally:
            await search.close()
            await db.dispose()

    try:
        manifest = asyncio.run(run())
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    print(orjson.dumps({k: manifest[k] for k in ("bundle_id", "counts", "k_anonymity")}).decode())
    print(f"failcat: wrote {out}", file=sys.stderr)
    return 0


TRUST_TIMEOUT_S = 10.0


def fetch_trusted(url: str) -> bytes:
    """The JWKS at a --trust URL. A URL that does not answer with it is the operator's to fix,
    so it is named in one line with what went wrong (not an unexpected error)."""
    import httpx

    try:
        resp = httpx.get(url, timeout=TRUST_TIMEOUT_S)
        resp.raise_for_status()
    except httpx.HTTPStatusError as exc:
        answer = exc.response
        raise CliError(
            f"--trust {url}: answered {answer.status_code} {answer.reason_phrase}, not the JWKS"
        ) from None
    except httpx.TimeoutException:
        raise CliError(f"--trust {url}: no answer within {TRUST_TIMEOUT_S:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        # ConnectError & co: their text says why ("[Errno 111] Connection refused").
        raise CliError(f"--trust {url}: cannot fetch it: {exc or type(exc).__name__}") from None
    return resp.content


def cmd_import_bundle(args: argparse.Namespace) -> int:
    from services.sharing.bundle import import_verified, read_bundle, trusted_keys
    from shared.db import Database
    from shared.security import SYSTEM

    settings = load_settings()
    # Everything is checked before the database is opened: a refused bundle stores nothing.
    verified = read_bundle(Path(args.file), trusted_keys(args.trust, fetch_trusted))

    async def run() -> dict[str, Any]:
        db = Database(settings.catalog_url)
        try:
            async with db.transaction() as session:
                return await import_verified(session, verified, SYSTEM, _progress)
        finally:
            await db.dispose()

    summary = asyncio.run(run())
    print(orjson.dumps(summary).decode())
    return 1 if summary["cases"].get("invalid") else 0


def subcommands(sub: Any, name: str, help_text: str) -> Any:
    """The sub-commands of `failcat <name>`, which another service may have made already
    (`export cases`, `import aiid`): argparse has no public way to reach them, so the parser's
    action list is read (stdlib argparse; tests/sharing/test_avid.py runs both verbs)."""
    parser = sub.choices.get(name)
    if parser is None:
        parser = sub.add_parser(name, help=help_text)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest=f"{name}_command", required=True)


def add_commands(sub: Any) -> None:
    exports = subcommands(sub, "export", "export cases")
    avid_out = exports.add_parser(
        "avid",
        help="cases a query finds, as AVID reports (JSON lines)",
        description="Each case as an AI Vulnerability Database report; cases imported from "
        "AVID come back as they were (services/sharing/SHARING.md).",
    )
    avid_out.add_argument("--query", "-q", default="", help="query language (default: all)")
    avid_out.add_argument("--out", "-o", help="write to this file (default: standard output)")
    avid_out.set_defaults(func=cmd_export_avid, local_database=True)

    bundle_out = exports.add_parser(
        "bundle",
        help="a signed, anonymised bundle of the cases a query finds (tar.gz)",
        description="Cases, their groups, adjudicated annotations and lessons, with a manifest "
        "(sha256 of every file, k-anonymity report) and a detached JWS signed by this "
        "instance's key. Profiles: internal, partner, public (services/sharing/SHARING.md).",
    )
    bundle_out.add_argument("--query", "-q", default="", help="query language (default: all)")
    bundle_out.add_argument("--profile", choices=("internal", "partner", "public"), required=True)
    bundle_out.add_argument("--out", "-o", required=True, help="the bundle file to write")
    bundle_out.set_defaults(func=cmd_export_bundle, local_database=True)

    imports = subcommands(sub, "import", "import records from other catalogs")
    bundle_in = imports.add_parser(
        "bundle", help="a signed bundle, verified against the keys you trust before storing"
    )
    bundle_in.add_argument("file", help="the bundle (tar.gz)")
    bundle_in.add_argument(
        "--trust", required=True, help="the issuer's JWKS URL, or a file with its JWKS or JWK"
    )
    bundle_in.set_defaults(func=cmd_import_bundle, local_database=True)
    avid_in = imports.add_parser("avid", help="AVID reports (JSON lines) as cases")
    avid_in.add_argument("file", help="AVID reports, one JSON object per line (or an array)")
    avid_in.set_defaults(func=cmd_import_avid, local_database=True)
    atlas = imports.add_parser("atlas", help="MITRE ATLAS case studies (JSON lines) as cases")
    atlas.add_argument("file", help="case studies, one JSON object per line (or an array)")
    atlas.set_defaults(func=cmd_import_atlas, local_database=True)
