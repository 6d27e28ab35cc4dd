"""`failcat search QUERY`, `failcat search verify [--repair]` and `failcat reindex`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

from services.cli.errors import CliError
from services.cli.remote import server_url
from services.search.request import SearchAnswer
from services.search.service import SearchService, search_entry
from shared.audit import Actor, audit_now
from shared.db import Database
from shared.security import SYSTEM, Principal, Sensitivity
from shared.settings import load_settings


class _DashedTerms(argparse.ArgumentParser):
    """A query may start with a negation (`failcat search -status:resolved`, `... refund
    -team:*`): an argument with one leading dash is a query term, not an option (the
    command's options are all `--long`, but -h). argparse took it for an unknown option
    ("unrecognized arguments: -status:resolved")."""

    def _parse_optional(self, arg_string: str) -> Any:
        if arg_string.startswith("-") and not arg_string.startswith("--") and arg_string != "-h":
            return None  # a positional: a word of the query
        return super()._parse_optional(arg_string)


def add_commands(subparsers: Any) -> None:
    search = subparsers.add_parser(
        "search",
        help="search cases (or: search verify [--repair])",
        description="Search cases with the query language of services/search/QUERY.md. "
        "`failcat search verify [--repair]` compares the index with the catalog instead; "
        "to search for the word verify, quote it: failcat search '\"verify\"'.",
    )
    search.__class__ = type("SearchParser", (_DashedTerms, type(search)), {})
    search.add_argument("query", nargs="*", help="the query (words are joined by spaces)")
    search.add_argument(
        "--facets",
        default="severity,status,failure_mode,model",
        help="comma-separated facet fields",
    )
    search.add_argument("--first", type=int, default=20)
    search.add_argument("--after", help="cursor from the previous page")
    search.add_argument("--sort", default="relevance")
    search.add_argument("--team", help="search as a member of this team (default: all)")
    search.add_argument(
        "--clearance",
        choices=[s.value for s in Sensitivity],
        help="search with this clearance (default: restricted)",
    )
    search.add_argument("--json", action="store_true", help="print the REST JSON instead")
    search.add_argument("--repair", action="store_true", help="with verify: fix differences")
    search.add_argument("--url", help="search this server instead (default: $FAILCAT_URL)")
    search.set_defaults(func=_search_command, local_database=True, local_index=True)

    reindex = subparsers.add_parser(
        "reindex", help="rebuild the search index from the catalog and switch to it"
    )
    reindex.set_defaults(func=_reindex_command, local_database=True)


async def _with_service(work: Any) -> int:
    settings = load_settings()
    db = Database(settings.catalog_url)
    service = await SearchService.start(settings, db)
    try:
        return await work(service)
    finally:
        await service.close()
        await db.dispose()


def _search_command(args: argparse.Namespace) -> int:
    url = server_url(args.url)
    if url is not None:
        return asyncio.run(_remote_search(url, args))
    if args.query == ["verify"]:
        return asyncio.run(_with_service(lambda s: _verify(s, args.repair)))
    principal = SYSTEM
    if args.team or args.clearance:
        principal = Principal(
            subject="cli",
            client_id="cli",
            team=args.team,
            clearance=Sensitivity(args.clearance or "restricted"),
        )
    return asyncio.run(_with_service(lambda s: _search(s, principal, args)))


async def _search(service: SearchService, principal: Principal, args: argparse.Namespace) -> int:
    facets = [f for f in args.facets.split(",") if f]
    result = await service.search(
        principal,
        " ".join(args.query),
        facets=facets,
        first=args.first,
        after=args.after,
        sort=args.sort,
    )
    # As AUDIT.md has it: an operator command on the host is the OS account's, and the
    # page's ids are recorded as for any search (this one prints them).
    operator = Actor(subject=f"os:{getpass.getuser()}", client="cli", team=args.team)
    await audit_now(
        service.db,
        operator,
        "cases.search",
        None,
        outcome="ok",
        details=search_entry(" ".join(args.query), result),
    )
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
        return 0
    docs = {}
    async with service.db.transaction() as session:
        for d in await service.feed.search_documents(session, [h.id for h in result.hits]):
            docs[d["id"]] = d
    print(render(result, docs))
    return 0


async def _remote_search(url: str, args: argparse.Namespace) -> int:
    """Client mode: GET /search/v1/cases with the caller's token (its visibility applies)."""
    from services.cli.remote import connect

    if args.query == ["verify"]:
        raise CliError("search verify compares a local catalog and index: run it on the server")
    if args.team or args.clearance:
        raise CliError("--team/--clearance are for local mode: with --url the token decides")
    params: dict[str, Any] = {
        "q": " ".join(args.query),
        "facets": args.facets,
        "first": args.first,
        "sort": args.sort,
    }
    if args.after:
        params["after"] = args.after
    async with connect(url) as remote:
        body = await remote.json("GET", "/search/v1/cases", params=params)
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    rows = []
    for hit in body["hits"]:
        case = hit.get("case") or {}
        model = case.get("model") or {}
        rows.append(
            _row(hit["id"], hit.get("score"), case, model.get("name"), model.get("version"))
        )
    facets = [
        (f["field"], [(b["value"], b["count"]) for b in f["buckets"]]) for f in body["facets"]
    ]
    total = f"{body['total']}{'+' if body.get('total_is_lower_bound') else ''}"
    page = body["page_info"]
    suggestions = [(s["field"], s["value"], s["closest"]) for s in body.get("suggestions", [])]
    cursor = page["end_cursor"] if page["has_next_page"] else None
    print(_table(total, rows, facets, cursor, suggestions))
    return 0


def _row(
    case_id: str, score: float | None, fields: dict[str, Any], model: Any, version: Any
) -> tuple[str, ...]:
    return (
        f"{score:.2f}" if score is not None else "-",
        case_id,
        fields.get("severity") or "-",
        fields.get("status") or "-",
        f"{model or '-'}@{version or '-'}",
        (fields.get("title") or "")[:60],
    )


def render(result: SearchAnswer, docs: dict[str, dict[str, Any]]) -> str:
    total = f"{result.total}{'+' if result.total_is_lower_bound else ''}"
    rows = []
    for h in result.hits:
        d = docs.get(h.id, {})
        rows.append(_row(h.id, h.score, d, d.get("model"), d.get("model_version")))
    facets = [
        (name, [(b.value, b.count) for b in buckets]) for name, buckets in result.facets.items()
    ]
    suggestions = [(s.field, s.value, s.closest) for s in result.suggestions]
    return _table(total, rows, facets, result.next_cursor, suggestions)


def _table(
    total: str,
    hits: list[tuple[str, ...]],
    facets: list[tuple[str, list[tuple[str, int]]]],
    next_cursor: str | None,
    suggestions: list[tuple[str, str, list[str]]],
) -> str:
    lines = [f"{total} cases"]
    rows = [("SCORE", "ID", "SEV", "STATUS", "MODEL", "TITLE"), *hits]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
        for r in rows
    ]
    for name, buckets in facets:
        values = "  ".join(f"{value} ({count})" for value, count in buckets) or "-"
        lines.append(f"{name}: {values}")
    for field, value, closest in suggestions:
        lines.append(f"no {field} '{value}'; did you mean: {', '.join(closest)}")
    if next_cursor:
        lines.append(f"more: --after {next_cursor}")
    return "\n".join(lines)


async def _verify(service: SearchService, repair: bool) -> int:
    report = await service.verify(repair=repair)
    print(json.dumps(report.as_json(), indent=2))
    return 0 if report.in_sync or repair else 1


def _reindex_command(_: argparse.Namespace) -> int:
    def progress(done: int, expected: int | None) -> None:
        pct = f" ({100 * done // expected}%)" if expected else ""
        print(
            f"\rreindex: {done}/{expected or '?'} documents{pct}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    async def work(service: SearchService) -> int:
        report = await service.reindex(progress)
        print(file=sys.stderr)
        print(json.dumps(report.as_json(), indent=2))
        return 0 if report.in_sync or report.repaired else 1

    return asyncio.run(_with_service(work))
