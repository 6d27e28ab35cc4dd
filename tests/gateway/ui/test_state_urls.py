"""The links a page builds by the hundred (facet toggles, heatmap cells) from one encoded
template are exactly the URLs of the states they stand for."""

from __future__ import annotations

from starlette.datastructures import QueryParams

from services.gateway.ui.state import SearchState, cell_urls, search_url, toggle_urls

AWKWARD = ["S2", "a b", "x&y=z", "100%", "ünïcode/é", "+plus", "#frag", "", "f.model=1"]


def _state(query: str) -> SearchState:
    return SearchState.from_params(QueryParams(query))


def test_toggle_urls_are_the_toggled_states_urls():
    for query in (
        "",
        "q=drift%20after&sort=newest&interval=week",
        "q=x&f.severity=S2&f.severity=a+b&f.model=m1&after=abc&page=3",
    ):
        state = _state(query)
        for name in ("severity", "model", "team"):
            url = toggle_urls(state, name)
            for value in [*AWKWARD, *state.selections.get(name, ())]:
                assert url(value) == search_url(state.toggled(name, value)), (query, name, value)


def test_cell_urls_are_the_cells_searches():
    for query in ("", "q=%25m&f.model=m1&f.model_version=old&f.team=t+1&interval=day"):
        state = _state(query)
        url = cell_urls(state, "model_version", "failure_mode")
        for version in AWKWARD[:5]:
            for mode in AWKWARD[4:]:
                selections = dict(state.selections)
                selections["model_version"] = (version,)
                selections["failure_mode"] = (mode,)
                expected = search_url(SearchState(q=state.q, selections=selections))
                assert url(version, mode) == expected, (query, version, mode)
