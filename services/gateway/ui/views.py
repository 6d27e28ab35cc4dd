"""Turning API answers into what templates show: highlight snippets, JSON facts, revision
diffs. Anything marked safe here is built from escaped pieces."""

from __future__ import annotations

import difflib
import json
import re
from html import escape, unescape
from typing import Any

from markupsafe import Markup

_EM = re.compile(r"(</?em>)")
LONG_TEXT = 80  # a change longer than this is shown as a word diff


def snippet(text: str) -> Markup:
    """A highlight snippet: both backends send escaped text with <em> around matches. Only
    those two tags survive; everything else is re-escaped (a snippet is never trusted HTML)."""
    out = []
    for piece in _EM.split(text):
        if piece == "<em>":
            out.append("<mark>")
        elif piece == "</em>":
            out.append("</mark>")
        else:
            out.append(escape(unescape(piece)))
    depth = sum(1 for p in out if p == "<mark>") - sum(1 for p in out if p == "</mark>")
    out.extend(["</mark>"] * max(0, depth))
    return Markup("".join(out))


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _text(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def word_diff(old: str, new: str) -> Markup:
    """<del>/<ins> around the words that changed."""
    a, b = re.findall(r"\S+|\s+", old), re.findall(r"\S+|\s+", new)
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.append(escape("".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{escape(''.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{escape(''.join(b[j1:j2]))}</ins>")
    return Markup("".join(out))


def change_rows(changes: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per changed field of a revision: short values as old -> new, long text as a
    word diff."""
    rows = []
    for name, change in sorted((changes or {}).items()):
        if isinstance(change, dict) and ("old" in change or "new" in change):
            old, new = _text(change.get("old")), _text(change.get("new"))
        else:
            old, new = "", _text(change)
        long = len(old) > LONG_TEXT or len(new) > LONG_TEXT
        rows.append(
            {"field": name, "old": old, "new": new, "diff": word_diff(old, new) if long else None}
        )
    return rows


def annotator_label(annotation: dict[str, Any], annotations: list[dict[str, Any]]) -> str:
    """The annotator as people know them: the display name, else the id; a name two
    annotators share (clients' names need not be unique) keeps the id beside it."""
    name, who = annotation.get("annotatorName"), annotation["annotator"]
    if not name:
        return who
    shared = {a["annotator"] for a in annotations if a.get("annotatorName") == name}
    return name if len(shared) == 1 else f"{name} ({who})"


def agreement_rows(annotations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per taxonomy field, what each annotator who submitted chose and whether they agree
    (shown on the case page beside the annotations; drafts are not counted)."""
    by_field: dict[tuple[str, str], dict[str, Any]] = {}
    for a in annotations:
        if a.get("status") != "SUBMITTED" or not isinstance(a.get("values"), dict):
            continue
        for name, value in a["values"].items():
            by_field.setdefault((a["taxonomy"], name), {})[annotator_label(a, annotations)] = value
    rows = []
    for (taxonomy, name), chosen in sorted(by_field.items()):
        distinct = {json.dumps(v, sort_keys=True) for v in chosen.values()}
        rows.append(
            {
                "taxonomy": taxonomy,
                "field": name,
                "chosen": {who: _text(v) for who, v in sorted(chosen.items())},
                "agreed": len(chosen) > 1 and len(distinct) == 1,
                "alone": len(chosen) == 1,
            }
        )
    return rows


def replay_command(suite: str, version: int, model_version: str) -> str:
    return (
        f"pytest --failcat-suite {suite}@{version} --failcat-model your.module:predict "
        f"--failcat-version {model_version} --failcat-report"
    )


def replay_rows(
    case: dict[str, Any], runs: list[dict[str, Any]], model_version: str
) -> list[dict[str, Any]]:
    """For each suite version holding the case: this case's outcome in the newest run of the
    chosen model version on it, or the command that would produce that run."""
    rows = []
    for suite in case["suites"]:
        run = next(
            (
                r
                for r in runs  # newest first
                if (r["suite"]["name"], r["suite"]["version"]) == (suite["name"], suite["version"])
            ),
            None,
        )
        outcome = None
        if run is not None:
            outcome = next((o for o in run["outcomes"] if o["caseId"] == case["id"]), None)
        rows.append(
            {
                "suite": suite,
                "run": run,
                "outcome": outcome,
                "command": replay_command(suite["name"], suite["version"], model_version),
            }
        )
    return rows


def current_session(sessions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The session a board's people meet in next: the open one, else the latest."""
    open_ = [s for s in sessions if s["status"] == "open"]
    return (open_ or sessions or [None])[-1]
