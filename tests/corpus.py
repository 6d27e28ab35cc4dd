"""Real failure records from ../shared/corpora, turned into failcat's wire format.

The corpora stay outside the package; tests read them in place.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def find_corpora() -> Path:
    """FAILCAT_CORPORA, else the shared/ folder beside the repository (as CI lays it out)."""
    candidates = [Path(p) for p in [os.environ.get("FAILCAT_CORPORA")] if p]
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "corpora")
    for path in candidates:
        if (path / "aiid_incidents.jsonl").exists():
            return path
    raise RuntimeError(
        f"the corpora are not at {', '.join(map(str, candidates))}: set FAILCAT_CORPORA"
    )


CORPORA = find_corpora()
_MODES = [
    "safety.harmful_content",
    "fairness.disparate_performance",
    "robustness.input_noise",
    "distribution_shift.concept_drift",
    "label_noise.mislabeled_target",
    None,
]


def _lines(name: str) -> Iterator[dict[str, Any]]:
    with (CORPORA / name).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def aiid_cases(
    n: int, *, model: str = "incident-classifier", tag: str | None = None
) -> list[dict[str, Any]]:
    """AI Incident Database incidents as captured cases (title, description, date, parties)."""
    out = []
    for i, rec in enumerate(itertools.islice(_lines("aiid_incidents.jsonl"), n)):
        deployers = json.loads(rec.get("Alleged deployer of AI system") or "[]")
        case: dict[str, Any] = {
            "external_id": f"aiid-{rec['incident_id']}",
            "title": rec["title"],
            "summary": rec["description"],
            "model": {"name": model, "version": f"1.{i % 3}.0"},
            "data_source": "aiid",
            "occurred_at": f"{rec['date']}T00:00:00Z",
            "environment": {"deployer": (deployers or ["unknown"])[0][:100]},
            "input": {
                "parties": json.loads(rec.get("Alleged harmed or nearly harmed parties") or "[]")
            },
            "prediction": {"label": "safe"},
            "expected": {"label": "harmful"},
            "confidence": round(0.5 + (i % 50) / 100, 2),
            "latency_ms": float(10 + i % 90),
            "severity": f"S{i % 5}",
            "tags": ["aiid"] + ([tag] if tag else []),
            "provenance": {"source": "aiid-import", "pipeline_version": "1"},
        }
        mode = _MODES[i % len(_MODES)]
        if mode:
            case["failure_mode"] = mode
        out.append(case)
    return out


def avid_cases(n: int) -> list[dict[str, Any]]:
    """AVID vulnerability reports as cases: the artifact is the model."""
    out = []
    for rec in itertools.islice(_lines("avid_reports.jsonl"), n):
        artifacts = rec.get("affects", {}).get("artifacts") or [{"name": "unknown"}]
        out.append(
            {
                "external_id": rec["metadata"]["report_id"],
                "title": rec["problemtype"]["description"]["value"][:500],
                "summary": (rec.get("description") or {}).get("value", ""),
                "model": {"name": artifacts[0]["name"][:200] or "unknown", "version": "1"},
                "data_source": "avid",
                "occurred_at": f"{rec.get('reported_date') or '2023-01-01'}T00:00:00Z",
                "failure_mode": "fairness.stereotyping",
                "tags": ["avid"],
            }
        )
    return out
