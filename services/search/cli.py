"""`failcat search QUERY`, `failcat search verify [--repair]` and `failcat reindex`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from services.search.request import SearchAnswer
from services.search.service import SearchService
from shared.db import Database
from shared.security import SYSTEM, Principal, Sensitivity
from shared.settings import load_settings


def add_commands(subparsers: Any) -> None:
    search = subparsers.add_parser(
        "search",
        help="search cases (or: search verify [--repair])",
        description="Search cases with the query language of services/search/QUERY.md. "
        "`failcat search verify [--repair]` compares the index with the catalog instead; "
        "to search for the word verify, quote it: failcat search '\"verify\"'.",
    )
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
    search.set_defaults(func=_search_command)

    reindex = subparsers.add_parser(
        "reindex", help="rebuild the search index from the catalog and switch to it"
    )
    reindex.set_defaults(func=_reindex_command)


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
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
        return 0
    docs = {}
    async with service.db.transaction() as session:
        for d in await service.feed.search_documents(session, [h.id for h in result.hits]):
            docs[d["id"]] = d
    print(render(result, docs))
    return 0


def render(result: SearchAnswer, docs: dict[str, dict[str, Any]]) -> str:
    total = f"{result.total}{'+' if result.total_is_lower_bound else ''}"
    lines = [f"{total} cases"]
    rows = [("SCORE", "ID", "SEV", "STATUS", "MODEL", "TITLE")]
    for h in result.hits:
        d = docs.get(h.id, {})
        rows.append(
            (
                f"{h.score:.2f}" if h.score is not None else "-",
                h.id,
                d.get("severity") or "-",
                d.get("status") or "-",
                f"{d.get('model') or '-'}@{d.get('model_version') or '-'}",
                (d.get("title") or "")[:60],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
        for r in rows
    ]
    for name, buckets in result.facets.items():
        values = "  ".join(f"{b.value} ({b.count})" for b in buckets) or "-"
        lines.append(f"{name}: {values}")
    for s in result.suggestions:
        lines.append(f"no {s.field} '{s.value}'; did you mean: {', '.join(s.closest)}")
    if result.next_cursor:
        lines.append(f"more: --after {result.next_cursor}")
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
