"""`failcat suites create|export` and `failcat gate` (exit 0 passed, 1 blocked, 2 error).

Run by an operator on the host: they read the database directly, as every case's reader
unless --team/--clearance narrow the view (as `failcat search` does). `failcat gate --url URL`
(or $FAILCAT_URL) asks a running server instead, with the token of FAILCAT_CLIENT_ID/SECRET or
of `failcat login`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from shared.errors import BadUserInput, FailcatError, FieldError, said
from shared.security import SYSTEM, Principal, Scope, Sensitivity

EXIT_PASSED, EXIT_BLOCKED, EXIT_ERROR = 0, 1, 2


def add_commands(subparsers: Any) -> None:
    suites = subparsers.add_parser("suites", help="regression suites: create, export")
    sub = suites.add_subparsers(dest="suites_command", required=True)

    create = sub.add_parser("create", help="freeze a query's or a list's cases as a suite version")
    create.add_argument("--name", required=True)
    create.add_argument("--model", required=True)
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument("--query", help="a saved search query (services/search/QUERY.md)")
    source.add_argument("--case-ids", help="comma-separated case ids")
    source.add_argument("--case-ids-file", help="a file of case ids, one a line")
    _viewer_options(create)
    create.set_defaults(func=_create)

    export = sub.add_parser("export", help="write a suite version as JSONL")
    export.add_argument("name")
    export.add_argument("--version", type=int, help="default: the latest")
    export.add_argument("--output", "-o", help="default: standard output")
    _viewer_options(export)
    export.set_defaults(func=_export)

    gate = subparsers.add_parser(
        "gate",
        help="may this model version ship? exit 0 passed, 1 blocked, 2 error",
        description="Evaluate the release gate for a model version. Exit code 0: passed, "
        "1: blocked, 2: error (bad policy, unknown model, database unreachable).",
    )
    gate.add_argument("--model", required=True)
    gate.add_argument("--version", required=True)
    gate.add_argument("--policy", help="a YAML or JSON policy file")
    gate.add_argument("--json", action="store_true", help="print the answer as JSON")
    gate.add_argument("--url", help="ask this server instead (default: $FAILCAT_URL)")
    gate.set_defaults(func=_gate)


def _viewer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--team", help="act as a member of this team (default: every team)")
    parser.add_argument(
        "--clearance",
        choices=[s.value for s in Sensitivity],
        help="act with this clearance (default: restricted)",
    )


def _principal(args: argparse.Namespace) -> Principal:
    """The operator on the host: the audit trail's `os:<user>`/`cli` (AUDIT.md), not `system`;
    without --team/--clearance it sees every case, as SYSTEM does."""
    return Principal(
        subject=f"os:{getpass.getuser()}",
        client_id="cli",
        scopes=frozenset(s.value for s in Scope),
        team=getattr(args, "team", None),
        clearance=Sensitivity(getattr(args, "clearance", None) or "restricted"),
    )


def _run(work: Callable[[Any, Any], Awaitable[int]], *, search: bool = False) -> int:
    """Open the database (and the search service when needed), run, report coded errors."""
    from shared.db import Database
    from shared.settings import load_settings

    async def main() -> int:
        settings = load_settings()
        db = Database(settings.catalog_url)
        searcher = None
        try:
            if search:
                from services.search.service import SearchService

                searcher = await SearchService.start(settings, db)
            return await work(db, searcher)
        finally:
            if searcher is not None:
                await searcher.close()
            await db.dispose()

    try:
        return asyncio.run(main())
    except FailcatError as exc:
        return _print_error(exc)


def _create(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from services.safeguards import service
    from services.safeguards.schemas import SuiteCreate

    ids = None
    if args.case_ids is not None:  # given, even empty: not "neither query nor case ids"
        ids = [i.strip() for i in args.case_ids.split(",") if i.strip()]
    elif args.case_ids_file:
        try:
            text = Path(args.case_ids_file).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise BadUserInput(
                f"{args.case_ids_file}: not UTF-8 text (byte {exc.start})",
                [FieldError("--case-ids-file", "a file of case ids, one a line")],
            ) from None
        ids = [i for i in (line.strip() for line in text.splitlines()) if i]
    try:
        data = SuiteCreate(name=args.name, model=args.model, query=args.query, case_ids=ids)
    except ValidationError as exc:
        # Named as the options were given: `--name: letters, digits, ...`.
        errors = [
            FieldError(
                ".".join(["--" + str(e["loc"][0]).replace("_", "-"), *map(str, e["loc"][1:])]),
                said(e),
            )
            for e in exc.errors()
        ]
        raise BadUserInput("invalid suite", errors) from None
    principal = _principal(args)

    async def work(db: Any, search: Any) -> int:
        async with db.transaction() as session:
            snap = await service.create_suite(session, data, principal, search)
        print(
            orjson.dumps(
                {
                    "name": snap.name,
                    "model": snap.model,
                    "version": snap.version,
                    "case_count": snap.case_count,
                    "created": snap.created,
                }
            ).decode()
        )
        return 0

    return _run(work, search=args.query is not None)


def _export(args: argparse.Namespace) -> int:
    from services.safeguards import service

    principal = _principal(args)

    async def work(db: Any, _: Any) -> int:
        snap, lines = await service.export_suite(db, args.name, args.version, principal)
        # A one-shot command: blocking writes hold up nothing else on this loop.
        out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115, ASYNC230
        written = 0
        try:
            async for chunk in lines:
                out.write(chunk)
                written += chunk.count(b"\n")
        finally:
            if args.output:
                out.close()
            else:
                out.flush()
        print(f"exported {written} cases of {snap.name} v{snap.version}", file=sys.stderr)
        return 0

    return _run(work)


def _print_error(exc: FailcatError) -> int:
    print(f"failcat: {exc.code}: {exc.message}", file=sys.stderr)
    for error in exc.errors:
        print(f"  {error.path}: {error.message}", file=sys.stderr)
    return EXIT_ERROR


def _gate(args: argparse.Namespace) -> int:
    from services.cli.remote import server_url
    from services.safeguards import gate

    try:
        policy = (
            gate.load_policy_file(Path(args.policy)) if args.policy else gate.parse_policy(None)
        )
    except FailcatError as exc:
        # One line: the message names the file, the line and the field.
        print(f"failcat: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    url = server_url(args.url)
    if url is not None:
        return asyncio.run(_remote_gate(url, args, policy))

    async def work(db: Any, _: Any) -> int:
        async with db.transaction() as session:
            result = await gate.release_gate(session, args.model, args.version, policy, SYSTEM)
        _print_gate(result, args.json)
        return EXIT_PASSED if result.passed else EXIT_BLOCKED

    return _run(work)


REMOTE_GATE = """
query($model: String!, $version: String!, $policy: JSON) {
  releaseGate(model: $model, version: $version, policy: $policy) {
    model version passed
    conditions { name passed detail caseIds groupIds runIds waiverIds hidden } } }"""


async def _remote_gate(url: str, args: argparse.Namespace, policy: Any) -> int:
    """Client mode: `releaseGate` over GraphQL with the caller's token, printed as the local
    mode prints it (the server counts every case; the evidence is what the token may see)."""
    from services.cli.remote import connect
    from services.safeguards.gate import Condition, GateResult

    variables = {
        "model": args.model,
        "version": args.version,
        "policy": policy.model_dump(mode="json", exclude_unset=True),
    }
    async with connect(url) as remote:
        body = await remote.json(
            "POST", "/graphql", json={"query": REMOTE_GATE, "variables": variables}
        )
    if body.get("errors"):
        error = body["errors"][0]
        extensions = error.get("extensions") or {}
        print(
            f"failcat: {extensions.get('code', 'ERROR')}: {error.get('message')}", file=sys.stderr
        )
        for field in extensions.get("errors") or []:
            print(f"  {field.get('path')}: {field.get('message')}", file=sys.stderr)
        return EXIT_ERROR
    answer = body["data"]["releaseGate"]
    result = GateResult(
        answer["model"],
        answer["version"],
        answer["passed"],
        [
            Condition(
                c["name"],
                c["passed"],
                c["detail"],
                case_ids=c["caseIds"],
                group_ids=c["groupIds"],
                run_ids=c["runIds"],
                waiver_ids=c["waiverIds"],
                hidden=c["hidden"],
            )
            for c in answer["conditions"]
        ],
    )
    _print_gate(result, args.json)
    return EXIT_PASSED if result.passed else EXIT_BLOCKED


def _print_gate(result: Any, as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(_gate_text(result))


def _gate_text(result: Any) -> str:
    verdict = "PASSED" if result.passed else "BLOCKED"
    lines = [f"release gate for {result.model} {result.version}: {verdict}"]
    for c in result.conditions:
        lines.append(f"  [{'ok' if c.passed else 'FAIL'}] {c.name}: {c.detail}")
        for label, ids in (("cases", c.case_ids), ("groups", c.group_ids), ("runs", c.run_ids)):
            if ids:
                more = "" if len(ids) <= 5 else f" (+{len(ids) - 5})"
                lines.append(f"         {label}: {', '.join(ids[:5])}{more}")
    return "\n".join(lines)
