"""The GraphQL documents the pages send (the API's public fields only)."""

from __future__ import annotations

CASE_FIELDS = """
  id title severity status failureMode occurredAt team sensitivity tags
  model { name } modelVersion { version } dataSource { name }
"""

SEARCH = """
query UiSearch($query: String!, $filter: SearchFilterInput, $facets: [String!], $first: Int!,
               $after: String, $sort: String!, $histogram: String) {
  search(query: $query, filter: $filter, facets: $facets, first: $first, after: $after,
         sort: $sort, histogram: $histogram) {
    total totalIsLowerBound
    hits { score highlights { field snippets } case { summary CASE_FIELDS } }
    facets { field buckets { value count } }
    histogram { value count }
    pageInfo { hasNextPage endCursor }
  }
}
""".replace("CASE_FIELDS", CASE_FIELDS)

CASE = """
query UiCase($id: ID!) {
  case(id: $id) {
    id revision externalId title summary occurredAt capturedAt receivedAt updatedAt
    environment input prediction expected confidence latencyMs signals
    failureMode taxonomyVersion severity impact status tags sensitivity team
    fingerprint contentHash mergedIntoId payloadSensitivity redactedFields
    piiFindings { kind path }
    provenance { source pipelineVersion capturedBy batchId }
    writeup { hypothesis experiments results rationale }
    model { name } modelVersion { version } dataSource { name }
    links { kind url title }
    revisions { revision actor actorName createdAt reason changes }
    contextEvents { kind occurredAt title link scope { model version dataSource } }
    suites { name version latestVersion }
    group {
      id fingerprint failureMode firstSeen lastSeen caseCount status
      resolvedInVersion resolvedAt regressedAt regressedInVersion
      cases(first: 10) { nodes { id title severity occurredAt modelVersion { version } } }
    }
  }
}
"""

# Whether a case is there for the reader (a notebook is exported for it): the case's
# visibility and audit, without the whole page's relations.
CASE_SEEN = "query UiCaseSeen($id: ID!) { case(id: $id) { id } }"

# Asked apart from CASE: an annotator who has not submitted may not read the others' yet
# (FORBIDDEN), which must not cost them the rest of the page.
ANNOTATIONS = """
query UiAnnotations($id: ID!) {
  case(id: $id) { id annotations { annotator annotatorName taxonomy values status submittedAt } }
}
"""

# One-click replay: the runs of the chosen version, with this case's outcome in each.
REPLAY = """
query UiReplay($id: ID!, $model: String!, $version: String!) {
  case(id: $id) { id title model { name versions { version } } suites { name version } }
  evaluationRuns(model: $model, version: $version) {
    id createdAt passRate suite { name version }
    outcomes { caseId outcome latencyMs prediction error }
  }
}
"""

# Asked apart from CASE, after the page is shown: finding similar cases is a search of its
# own, several times the cost of the rest of the page.
SIMILAR = """
query UiSimilar($id: ID!) {
  case(id: $id) { id similar(first: 5) { id title severity failureMode } }
}
"""

SEVERITIES = ("S0", "S1", "S2", "S3", "S4")

# One request for the whole dashboard, whatever the data size: the heatmap and totals, one
# histogram per severity (aliases), the regressed groups. A severity series the page will not
# draw (another severity is selected) is skipped with @include: each series is a search over
# the whole matching set, so an unwanted one costs as much as a wanted one.
_SEVERITY_VARIABLES = ", ".join(
    f"${s.lower()}: SearchFilterInput, $with{s}: Boolean!" for s in SEVERITIES
)
DASHBOARD = """
query UiDashboard($query: String!, $filter: SearchFilterInput, $interval: String!,
                  $events: ContextEventFilterInput, $since: DateTime, SEVERITY_VARIABLES) {
  overview: search(query: $query, filter: $filter, first: 1, facets: ["severity"],
                   heatmap: {x: "model_version", y: "failure_mode"}) {
    total totalIsLowerBound
    heatmap { x y count }
    facets { field buckets { value count } }
  }
  SEVERITY_SERIES
  events: contextEvents(filter: $events, first: 100) { nodes { kind occurredAt title } }
  remediation: impactMetrics(metric: REMEDIATION_TIME, by: MODEL, period: MONTH, since: $since) {
    key period count medianHours p90Hours
  }
  regressed: groups(status: REGRESSED, first: 20) {
    nodes {
      id failureMode caseCount lastSeen resolvedInVersion regressedInVersion regressedAt
      model { name }
    }
  }
}
""".replace("SEVERITY_VARIABLES", _SEVERITY_VARIABLES).replace(
    "SEVERITY_SERIES",
    "\n  ".join(
        f"{s.lower()}: search(query: $query, filter: ${s.lower()}, first: 1, "
        f"histogram: $interval) @include(if: $with{s}) {{ total histogram {{ value count }} }}"
        for s in SEVERITIES
    ),
)

# The review page: the caller's boards with their sessions' agendas, and the fields of the
# shared taxonomy whose agreement it shows (asked for in a second request, AGREEMENT).
REVIEW = """
query UiReview {
  reviewBoards {
    id name team cadence nextOwner roster
    sessions {
      id number owner scheduledFor status
      agenda {
        id position kind reason status decision carriedFrom
        case { id title severity } group { id failureMode caseCount }
      }
    }
  }
  annotationTaxonomy(name: "failcat") { name fields { name type subfields { name } } }
}
"""

REVIEW_QUEUE = """
query UiReviewQueue {
  annotationQueue(kind: NEEDS_REVIEW, first: 20) {
    nodes { taxonomy annotators submitted disagreement case { id title severity } }
  }
}
"""

# Fields whose values are categories (what agreement statistics are defined on).
AGREEMENT_TYPES = ("ENUM", "MULTI_ENUM", "BOOL", "INT", "FLOAT", "DATE")
MAX_AGREEMENT_FIELDS = 6


def agreement_query(taxonomy: str, fields: list[str]) -> str:
    """One request for the agreement of every field given (aliases f0, f1, ...)."""
    parts = [
        f'f{i}: agreement(taxonomy: "{taxonomy}", field: "{name}") '
        "{ field n level fleissKappa krippendorffAlpha { value low high } }"
        for i, name in enumerate(fields)
    ]
    return "query UiAgreement {\n  " + "\n  ".join(parts) + "\n}"
