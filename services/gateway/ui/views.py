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
