"""Exportable notebooks: a search or a case as a Jupyter notebook that fetches the same data
through the API with the reader's own client and redraws the page's charts.

The notebook holds no data and no secret, only the query: whoever runs it sees what their
own client may see (visibility, redaction and the audit trail apply as in the API). It needs
nothing beyond httpx (which failcat-client installs) and IPython, which runs it.
"""

from __future__ import annotations

import json
from pprint import pformat
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from services.gateway.ui import queries

KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}

# Sign in the way every failcat client does: OAuth client credentials from the environment
# (or a token already issued), against the instance the notebook came from.
SETUP = """import os

import httpx

URL = os.environ.get("FAILCAT_URL", {base!r})


def access_token() -> str:
    if os.environ.get("FAILCAT_TOKEN"):
        return os.environ["FAILCAT_TOKEN"]
    resp = httpx.post(
        URL + "/oauth/token",
        data={{"grant_type": "client_credentials"}},
        auth=(os.environ["FAILCAT_CLIENT_ID"], os.environ["FAILCAT_CLIENT_SECRET"]),
        timeout=30,
    )
    resp.raise_for_status()
    return resp.json()["access_token"]


HEADERS = {{"Authorization": "Bearer " + access_token()}}


def graphql(document: str, variables: dict):
    resp = httpx.post(
        URL + "/graphql",
        json={{"query": document, "variables": variables}},
        headers=HEADERS,
        timeout=60,
    )
    body = resp.json()
    if body.get("errors"):
        raise RuntimeError(body["errors"][0]["message"])
    return body["data"]
"""

# The charts are drawn as SVG by a few lines here, not by a plotting library the reader may
# not have installed.
BARS = '''from html import escape

from IPython.display import SVG, display


def bar_chart(title: str, pairs: list, width: int = 640, bar: int = 18) -> None:
    """Horizontal bars, one per (label, count)."""
    peak = max((count for _, count in pairs), default=0) or 1
    rows = []
    for i, (label, count) in enumerate(pairs):
        y = 24 + i * (bar + 4)
        w = (width - 260) * count / peak
        rows.append(
            f'<text x="0" y="{y + 13}" font-size="12">{escape(str(label))}</text>'
            f'<rect x="200" y="{y}" width="{w:.1f}" height="{bar}" fill="#1d4ed8"/>'
            f'<text x="{205 + w:.1f}" y="{y + 13}" font-size="12">{count}</text>'
        )
    height = 30 + len(pairs) * (bar + 4)
    display(SVG(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<text x="0" y="14" font-size="14" font-weight="bold">{escape(title)}</text>'
        f'{"".join(rows)}</svg>'
    ))
'''


HOW_TO_RUN = (
    "Run it with `FAILCAT_CLIENT_ID` and `FAILCAT_CLIENT_SECRET` (or `FAILCAT_TOKEN`) set; "
    "`FAILCAT_URL` overrides the instance. It fetches the data again through the API: you "
    "see what your own client may see."
)


def _notebook(*cells: Any) -> str:
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = KERNEL
    return nbformat.writes(nb)


def search_notebook(base: str, variables: dict[str, Any], link: str) -> str:
    """The search page as a notebook: the same query, facets and histogram."""
    return _notebook(
        new_markdown_cell(
            "# failcat search\n\n"
            f"Query: `{variables.get('query') or '(all cases)'}`"
            + (
                f", facet selections: `{json.dumps(variables['filter'])}`"
                if variables.get("filter")
                else ""
            )
            + f"\n\nThe page: <{link}>\n\n{HOW_TO_RUN}"
        ),
        new_code_cell(SETUP.format(base=base)),
        new_code_cell(
            f'QUERY = """{queries.SEARCH.strip()}"""\n'
            f"VARIABLES = {pformat(variables, width=88)}\n"
            "result = graphql(QUERY, VARIABLES)['search']\n"
            "print(f\"{result['total']} cases\")\n"
            "for hit in result['hits']:\n"
            "    case = hit['case']\n"
            "    print(case['id'], case['severity'], case['failureMode'], '-', case['title'])"
        ),
        new_code_cell(
            BARS + "\nfor facet in result['facets']:\n"
            "    bar_chart(facet['field'], [(b['value'], b['count']) for b in facet['buckets']])\n"
            "bar_chart('cases per ' + VARIABLES['histogram'],"
            " [(b['value'][:10], b['count']) for b in result['histogram']])"
        ),
    )


def case_notebook(base: str, case_id: str, link: str) -> str:
    """The case page as a notebook: its facts, its history, its group by version."""
    return _notebook(
        new_markdown_cell(f"# failcat case {case_id}\n\nThe page: <{link}>\n\n{HOW_TO_RUN}"),
        new_code_cell(SETUP.format(base=base)),
        new_code_cell(
            f'CASE = """{queries.CASE.strip()}"""\n'
            f"case = graphql(CASE, {{'id': {case_id!r}}})['case']\n"
            "print(case['title'])\n"
            "print('model', case['model']['name'], case['modelVersion']['version'],"
            " '| severity', case['severity'], '| status', case['status'])\n"
            "for rev in case['revisions']:\n"
            "    print('r%s' % rev['revision'], rev['createdAt'][:19], rev['actorName'] or"
            " rev['actor'], sorted((rev['changes'] or {}).keys()))"
        ),
        new_code_cell(
            BARS + "\ngroup = case['group']\n"
            "bar_chart('group ' + group['id'] + ': cases by version', sorted(\n"
            "    {c['modelVersion']['version']: sum(1 for d in group['cases']['nodes']\n"
            "     if d['modelVersion']['version'] == c['modelVersion']['version'])\n"
            "     for c in group['cases']['nodes']}.items()))"
        ),
    )
