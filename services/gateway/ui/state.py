"""A search page's whole state lives in its URL (shareable): `q` the query-language text,
`f.<field>` one per selected facet value (repeated), `sort`, `after` the page cursor, `page`
its number (for display only), `interval` the histogram's bucket.

The facet fields, sorts and intervals come from the search document's one table
(services/search/fields.py), so a field added there shows up here.
"""

from __future__ import annotations

import calendar
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote_plus, urlencode

from starlette.datastructures import QueryParams

from services.search.fields import HISTOGRAM_INTERVALS, SCHEMA

FACETS: tuple[str, ...] = tuple(
    f.name for f in SCHEMA.fields if f.facet and f.name != "failure_mode_parent"
)
SORTS: tuple[str, ...] = tuple(SCHEMA.sorts)
INTERVALS: tuple[str, ...] = HISTOGRAM_INTERVALS
DEFAULT_INTERVAL = "month"
PAGE_SIZE = 20
FACET_PREFIX = "f."
MAX_QUERY_CHARS = 2000  # longer text is the API's to refuse; the URL stays sane


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class SearchState:
    q: str = ""
    selections: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sort: str = "relevance"
    after: str | None = None
    page: int = 1
    interval: str = DEFAULT_INTERVAL

    @classmethod
    def from_params(cls, params: QueryParams) -> SearchState:
        selections: dict[str, tuple[str, ...]] = {}
        for name in FACETS:
            values = tuple(dict.fromkeys(v for v in params.getlist(FACET_PREFIX + name) if v))
            if values:
                selections[name] = values
        sort = params.get("sort") or "relevance"
        interval = params.get("interval") or DEFAULT_INTERVAL
        try:
            page = max(1, int(params.get("page") or 1))
        except ValueError:
            page = 1
        return cls(
            q=(params.get("q") or "")[:MAX_QUERY_CHARS],
            selections=selections,
            # An unknown sort goes to the API, which names the valid ones.
            sort=sort,
            after=params.get("after") or None,
            page=page,
            interval=interval if interval in INTERVALS else DEFAULT_INTERVAL,
        )

    def params(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.q:
            out.append(("q", self.q))
        for name in FACETS:
            out.extend((FACET_PREFIX + name, v) for v in self.selections.get(name, ()))
        if self.sort != "relevance":
            out.append(("sort", self.sort))
        if self.interval != DEFAULT_INTERVAL:
            out.append(("interval", self.interval))
        if self.after:
            out.extend([("after", self.after), ("page", str(self.page))])
        return out

    def query_string(self) -> str:
        return urlencode(self.params())

    def first_page(self) -> SearchState:
        return replace(self, after=None, page=1)

    def toggled(self, name: str, value: str) -> SearchState:
        """This state with `value` of facet `name` selected or unselected (back to page 1)."""
        values = self.selections.get(name, ())
        values = tuple(v for v in values if v != value) if value in values else (*values, value)
        selections = {k: v for k, v in self.selections.items() if k != name}
        if values:
            selections[name] = values
        return replace(self.first_page(), selections=selections)

    def with_(self, **changes: Any) -> SearchState:
        return replace(self.first_page(), **changes)

    def filter_input(self) -> dict[str, list[str]] | None:
        """GraphQL's SearchFilterInput (camelCase field names)."""
        if not self.selections:
            return None
        return {camel(name): list(values) for name, values in self.selections.items()}


def search_url(state: SearchState) -> str:
    query = state.query_string()
    return "/ui/search" + (f"?{query}" if query else "")


# A page links to many states that differ from its own in one or two facet values (each facet
# bucket's toggle, each heatmap cell): the URL of the rest of the state is encoded once, with a
# random marker where the value goes, and each link is that template with the value put in.
# A marker is letters and digits (urlencode leaves it as is) and random per page, so no value
# can contain it.


def _marker() -> str:
    return "m" + secrets.token_hex(12)


def toggle_urls(state: SearchState, name: str) -> Callable[[str], str]:
    """`url(value)` == search_url(state.toggled(name, value)), for the values of one facet."""
    mark = _marker()
    selected = state.selections.get(name, ())
    template = search_url(state.toggled(name, mark))

    def url(value: str) -> str:
        if value in selected:  # unselecting: the few selected values are built as they are
            return search_url(state.toggled(name, value))
        return template.replace(mark, quote_plus(value), 1)

    return url


def cell_urls(state: SearchState, x: str, y: str) -> Callable[[str, str], str]:
    """`url(vx, vy)`: the search of `state` with exactly vx selected in facet x and vy in y."""
    mx, my = _marker(), _marker()
    selections = dict(state.selections) | {x: (mx,), y: (my,)}
    template = search_url(SearchState(q=state.q, selections=selections))

    def url(vx: str, vy: str) -> str:
        return template.replace(mx, quote_plus(vx), 1).replace(my, quote_plus(vy), 1)

    return url


def bucket_query(value: str, interval: str) -> str:
    """The query-language term for one histogram bucket (a range of occurred_at): days are
    whole days and a range's end day is included, so a bucket ends on its last day."""
    start = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if interval == "hour":
        end = start + timedelta(minutes=59, seconds=59, milliseconds=999)
        iso = "%Y-%m-%dT%H:%M:%S"
        return f"occurred:{start.strftime(iso)}Z..{end.strftime(iso)}.999Z"
    if interval == "month":
        last = calendar.monthrange(start.year, start.month)[1]
        end = start.replace(day=last)
    else:
        end = start + timedelta(days=6 if interval == "week" else 0)
    return f"occurred:{start.date().isoformat()}..{end.date().isoformat()}"
