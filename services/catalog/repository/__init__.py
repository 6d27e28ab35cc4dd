"""Every query of the catalog, and nothing else, in one module per part of the catalog:

- cases.py: cases and their links (visible reads, filtered pages, duplicate lookups, the ingest
  batch's inserts, compare-and-set updates, evictions)
- revisions.py: case history
- groups.py: failure groups
- models.py: models, model versions, data sources
- taxonomy.py: failure-mode taxonomy versions and the severity rubric
- sampling.py: sampling rules and reservoir counters
- outbox.py: the search outbox and search document rows
- retention.py: the cases a retention policy makes due, and their set-based purges
- capture_policies.py: capture policies (the current version per key, history, the next one)
- context_events.py: context events (deploys, feature changes, drift alerts, environment
  shifts) and the cases around them
- visibility.py: the visibility rule over these tables; base.py: what the modules share

Set-based: one statement per table per batch (per chunk of an ingested batch).
`CatalogRepository` is all of them over one session, so an operation that touches several
parts needs one object.
"""

from __future__ import annotations

from services.catalog.repository.capture_policies import CapturePolicyQueries
from services.catalog.repository.cases import CaseQueries
from services.catalog.repository.context_events import ContextEventQueries
from services.catalog.repository.groups import GroupQueries
from services.catalog.repository.models import ModelQueries
from services.catalog.repository.outbox import OutboxQueries
from services.catalog.repository.retention import RetentionQueries
from services.catalog.repository.revisions import RevisionQueries
from services.catalog.repository.sampling import SamplingQueries
from services.catalog.repository.taxonomy import TaxonomyQueries
from services.catalog.repository.visibility import visible_case_ids, visible_to


class CatalogRepository(
    CaseQueries,
    RevisionQueries,
    GroupQueries,
    ModelQueries,
    TaxonomyQueries,
    SamplingQueries,
    OutboxQueries,
    ContextEventQueries,
    RetentionQueries,
    CapturePolicyQueries,
):
    """Every catalog query over one session."""


__all__ = ["CatalogRepository", "visible_case_ids", "visible_to"]
