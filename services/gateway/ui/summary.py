"""Shareable summaries of a case or of a search, in Markdown. The reader's own token fetched
the data, so a summary holds only what its author may see; its link (the page's URL with
`summary.md` / `summary.html`) is stable and shows each reader what they may see."""

from __future__ import annotations

import re
from typing import Any

from services.gateway.ui.state import SearchState

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def md(text: Any) -> str:
    """Inline text from data, its Markdown syntax escaped (a title cannot inject a link)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ") if text is not None else "—"


def block(text: str) -> str:
    """A write-up stays Markdown, but raw HTML in it is shown as text: a summary pasted into a
    renderer that passes HTML through cannot run a script."""
    return text.strip().replace("<", "&lt;")


def case_markdown(case: dict[str, Any], base: str) -> str:
    url = f"{base}/ui/cases/{case['id']}"
    facts = [
        ("Case", f"[{case['id']}]({url})"),
        ("Model", md(f"{case['model']['name']} {case['modelVersion']['version']}")),
        ("Data source", md(case["dataSource"]["name"])),
        ("Occurred", md(case["occurredAt"])),
        ("Severity", md(case.get("severity"))),
        ("Status", md(case["status"])),
        ("Failure mode", md(case.get("failureMode"))),
        ("Team", md(case.get("team"))),
        ("Sensitivity", md(case["sensitivity"])),
    ]
    lines = [f"# {md(case.get('title') or '(untitled case)')}", ""]
    lines += [f"- **{name}**: {value}" for name, value in facts]
    if case.get("tags"):
        lines.append(f"- **Tags**: {', '.join(md(t) for t in case['tags'])}")
    if case.get("summary"):
        lines += ["", "## Summary", "", block(case["summary"])]
    writeup = case.get("writeup") or {}
    parts = [(k, writeup.get(k)) for k in ("hypothesis", "experiments", "results", "rationale")]
    if any(v for _, v in parts):
        lines += ["", "## Write-up"]
        for name, value in parts:
            if value:
                lines += ["", f"### {name.title()}", "", block(value)]
    group = case.get("group")
    if group:
        lines += [
            "",
            "## Failure group",
            "",
            f"- {group['caseCount']} case(s), first seen {md(group['firstSeen'])}, "
            f"last seen {md(group['lastSeen'])}, status {md(group['status'])}",
        ]
        if group.get("regressedInVersion"):
            lines.append(
                f"- Regressed in {md(group['regressedInVersion'])} after being resolved in "
                f"{md(group.get('resolvedInVersion'))}"
            )
    if case.get("links"):
        lines += ["", "## Links", ""]
        lines += [
            f"- [{md(link.get('title') or link['url'])}]({link['url']}) ({md(link['kind'])})"
            for link in case["links"]
        ]
    if case.get("revisions"):
        lines += ["", "## History", ""]
        for rev in case["revisions"]:
            who = md(rev.get("actorName") or rev["actor"])
            fields = ", ".join(sorted(rev.get("changes") or {})) or "created"
            reason = f": {md(rev['reason'])}" if rev.get("reason") else ""
            lines.append(f"- r{rev['revision']} {md(rev['createdAt'])} by {who} ({fields}){reason}")
    return "\n".join(lines) + "\n"


def search_markdown(state: SearchState, result: dict[str, Any], base: str, link: str) -> str:
    total = f"{result['total']}{'+' if result['totalIsLowerBound'] else ''}"
    lines = ["# failcat search", ""]
    if state.q:
        lines.append(f"- **Query**: `{state.q.replace('`', '')}`")
    for name, values in state.selections.items():
        lines.append(f"- **{md(name)}**: {', '.join(md(v) for v in values)}")
    lines += [f"- **Sort**: {md(state.sort)}", f"- **Cases**: {total}", f"- **Link**: {link}"]
    lines += ["", "## Cases", ""]
    for hit in result["hits"]:
        case = hit["case"]
        if case is None:
            continue
        lines.append(
            f"- [{md(case.get('title') or case['id'])}]({base}/ui/cases/{case['id']}) — "
            f"{md(case.get('severity'))}, {md(case.get('failureMode'))}, "
            f"{md(case['model']['name'])} {md(case['modelVersion']['version'])}"
        )
    for facet in result["facets"]:
        if facet["buckets"]:
            lines += ["", f"## By {md(facet['field'])}", ""]
            lines += [f"- {md(b['value'])}: {b['count']}" for b in facet["buckets"][:10]]
    return "\n".join(lines) + "\n"
