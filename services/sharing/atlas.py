"""`failcat import atlas FILE`: MITRE ATLAS case studies (mitre-atlas/atlas-data, the case
studies of dist/ATLAS.yaml, one JSON object per line) as cases.

| ATLAS | failcat |
|---|---|
| `id` (AML.CS0000) | `external_id` (data source `atlas`, provenance source `mitre-atlas`) |
| `name` | `title` |
| `summary` | `summary` |
| `incident-date` | `occurred_at` (midnight UTC; the granularity is kept in the annotation) |
| `target` | `model.name` (version `unknown`) |
| `procedure` | `writeup.experiments`: the steps as a numbered list, tactic and technique named |
| tactics, techniques | `tags` (`AML.TA0002`, `AML.T0000.001` ...), `atlas`, `atlas:<type>` |
| `references` | `links` (kind `other`, the reference's title) |
| techniques | `failure_mode`, where a mapping is defensible (TECHNIQUE_TO_MODE) |

The originals (the procedure as structured steps, tactics, techniques, the actor, reporter,
target, case-study type and date granularity) are kept as a submitted annotation of the `ATLAS`
taxonomy by the annotator `MITRE ATLAS`, through the annotation service's import path.
Idempotent: the case-study id is the external id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.annotation import service as annotations
from services.annotation.schemas import FieldType, TaxonomyField
from services.sharing.importing import import_records
from shared.security import Principal

TAXONOMY = "ATLAS"
ANNOTATOR = "MITRE ATLAS"
DATA_SOURCE = "atlas"
SOURCE = "mitre-atlas"
URL = re.compile(r"^https?://\S+$")
MAX_LINKS = 50
MAX_TAGS = 50

# ATLAS techniques (v5) -> failcat's failure modes, only where the technique is itself the way
# the model fails. Reconnaissance, resource development, access and the "external harms" are
# steps or consequences of an attack, not failure modes, and map to nothing.
TECHNIQUE_TO_MODE: dict[str, str] = {
    "AML.T0015": "adversarial_input.evasion",  # Evade AI Model
    "AML.T0043": "adversarial_input",  # Craft Adversarial Data
    "AML.T0051": "adversarial_input.prompt_injection",  # LLM Prompt Injection
    "AML.T0054": "adversarial_input.jailbreak",  # LLM Jailbreak
    "AML.T0020": "adversarial_input.data_poisoning",  # Poison Training Data
    "AML.T0019": "adversarial_input.data_poisoning",  # Publish Poisoned Datasets
    "AML.T0059": "adversarial_input.data_poisoning",  # Erode Dataset Integrity
    "AML.T0070": "adversarial_input.data_poisoning",  # RAG Poisoning
    "AML.T0018": "adversarial_input",  # Manipulate AI Model
    "AML.T0018.000": "adversarial_input.data_poisoning",  # Poison AI Model
    "AML.T0024.000": "safety.privacy_leak",  # Infer Training Data Membership
    "AML.T0024.001": "safety.privacy_leak",  # Invert AI Model
    "AML.T0024.002": "adversarial_input.model_extraction",  # Extract AI Model
    "AML.T0057": "safety.privacy_leak",  # LLM Data Leakage
    "AML.T0056": "safety.privacy_leak",  # Extract LLM System Prompt
    "AML.T0062": "safety.hallucination",  # Discover LLM Hallucinations
    "AML.T0060": "safety.hallucination",  # Publish Hallucinated Entities
    "AML.T0029": "latency",  # Denial of AI Service
    "AML.T0034": "latency",  # Cost Harvesting
}


def technique_mode(technique: str) -> str | None:
    """The failure mode of a technique, or of its parent technique (AML.T0051.001 ->
    AML.T0051)."""
    if technique in TECHNIQUE_TO_MODE:
        return TECHNIQUE_TO_MODE[technique]
    parent = technique.rsplit(".", 1)[0] if technique.count(".") == 2 else None
    return TECHNIQUE_TO_MODE.get(parent) if parent else None


def failure_mode(techniques: list[str], known: set[str]) -> str | None:
    """A sub-mode before a family (the more precise mapping), then procedure order."""
    modes = [m for m in (technique_mode(t) for t in techniques) if m in known]
    precise = [m for m in modes if "." in m]
    return (precise or modes or [None])[0]


def taxonomy_fields() -> list[TaxonomyField]:
    def text(name: str, description: str = "") -> TaxonomyField:
        return TaxonomyField(name=name, type=FieldType.STRING, description=description)

    return [
        TaxonomyField(name="tactics", type=FieldType.LIST, description="ATLAS tactic ids"),
        TaxonomyField(name="techniques", type=FieldType.LIST, description="ATLAS technique ids"),
        TaxonomyField(
            name="procedure",
            type=FieldType.OBJECT_LIST,
            subfields=[text("tactic"), text("technique"), text("description")],
            description="the case study's steps, in order",
        ),
        text("case_study_type", "exercise or incident"),
        text("incident_date_granularity", "DATE, MONTH or YEAR"),
        text("target"),
        text("actor"),
        text("reporter"),
    ]


def _steps(procedure: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{n}. **{s.get('tactic', '')} / {s.get('technique', '')}**: {s.get('description', '')}"
        for n, s in enumerate(procedure, start=1)
    )


def not_a_study(record: dict[str, Any]) -> str | None:
    """Why `record` is not a case study to import (None: it is): its id is the case's
    external id, which makes the import idempotent."""
    study_id = record.get("id")
    if not isinstance(study_id, str) or not study_id.strip():
        return "not an ATLAS case study: no 'id' (a string such as AML.CS0000)"
    return None


def study_case(study: dict[str, Any], known: set[str]) -> dict[str, Any]:
    procedure = study.get("procedure") or []
    tactics = list(dict.fromkeys(s["tactic"] for s in procedure if s.get("tactic")))
    techniques = list(dict.fromkeys(s["technique"] for s in procedure if s.get("technique")))
    kind = study.get("case-study-type")
    tags = ["atlas", *([f"atlas:{kind}"] if kind else []), *tactics, *techniques][:MAX_TAGS]
    links = [
        {"kind": "other", "url": r["url"], "title": (r.get("title") or "")[:500] or None}
        for r in study.get("references") or []
        if isinstance(r.get("url"), str) and URL.match(r["url"]) and len(r["url"]) <= 2000
    ][:MAX_LINKS]
    date = study.get("incident-date")
    return {
        "external_id": study["id"],
        "title": (study.get("name") or "")[:500] or None,
        "summary": study.get("summary") or None,
        "model": {"name": (study.get("target") or "unknown")[:200], "version": "unknown"},
        "data_source": DATA_SOURCE,
        "occurred_at": f"{date}T00:00:00Z" if date else None,
        "tags": tags,
        "links": links,
        "writeup": {"experiments": _steps(procedure)} if procedure else None,
        "failure_mode": failure_mode(techniques, known),
        "provenance": {"source": SOURCE},
    }


def study_values(study: dict[str, Any]) -> dict[str, Any]:
    procedure = study.get("procedure") or []
    values = {
        "tactics": [s["tactic"] for s in procedure if s.get("tactic")],
        "techniques": [s["technique"] for s in procedure if s.get("technique")],
        "procedure": procedure,
        "case_study_type": study.get("case-study-type"),
        "incident_date_granularity": study.get("incident-date-granularity"),
        "target": study.get("target"),
        "actor": study.get("actor"),
        "reporter": study.get("reporter"),
    }
    return {k: v for k, v in values.items() if v is not None}


async def import_case_studies(
    session: AsyncSession,
    studies: list[dict[str, Any]],
    actor: Principal,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    taxonomy = await annotations.import_taxonomy(
        session,
        TAXONOMY,
        taxonomy_fields(),
        description="MITRE ATLAS: a case study's procedure, tactics and techniques",
        source=SOURCE,
        actor=actor,
    )
    return await import_records(
        session,
        studies,
        actor,
        taxonomy=taxonomy,
        annotator=ANNOTATOR,
        to_case=study_case,
        to_values=study_values,
        record_id=lambda study: study.get("id"),
        label="atlas case studies",
        progress=progress,
    )
