"""Realistic generated failure cases for benchmarks (about 1 KB each as wire JSON).

Distributions, chosen to look like production traffic rather than uniform noise:
- models: 40 names with Zipf(s=1.2) popularity, each with 1-6 versions (newer ones more common);
- failure modes: every sub-mode of the default taxonomy, Zipf(s=1.1) (a few modes dominate);
- severity: S0 1%, S1 4%, S2 15%, S3 40%, S4 40%;
- data sources: 12, Zipf; teams: 8; regions: 6; sensitivity: mostly internal;
- occurred_at: uniform over the last 90 days; confidence Beta-like around 0.8; latency
  log-normal around 40 ms with a long tail;
- text: titles and summaries are drawn from real incident write-ups in ../shared/corpora
  when present (so analyzers see real language), else from a fixed word list.
Deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.catalog.reference import DEFAULT_TAXONOMY

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "aiid_incidents.jsonl"
MODES = [code for code, _, _ in DEFAULT_TAXONOMY if "." in code]
SEVERITY_WEIGHTS = {"S0": 1, "S1": 4, "S2": 15, "S3": 40, "S4": 40}
REGIONS = ["eu-west-1", "us-east-1", "us-west-2", "ap-south-1", "eu-central-1", "sa-east-1"]
TEAMS = ["payments-ml", "search", "ads", "risk", "vision", "speech", "recsys", "trust"]
WORDS = [
    "model",
    "predicted",
    "wrong",
    "label",
    "under",
    "drift",
    "after",
    "release",
    "with",
    "low",
    "confidence",
    "on",
    "rare",
    "merchant",
    "category",
    "refund",
    "fraud",
    "image",
    "text",
    "toxic",
    "latency",
    "spike",
    "region",
]


def _zipf_weights(n: int, s: float) -> list[float]:
    return [1 / (k**s) for k in range(1, n + 1)]


def _texts() -> list[tuple[str, str]]:
    if not CORPUS.exists():
        return []
    out = []
    with CORPUS.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            out.append((rec["title"][:200], rec["description"][:600]))
    return out


class CaseGenerator:
    def __init__(self, seed: int = 42) -> None:
        self.rng = random.Random(seed)
        self.models = [f"model-{i:02d}" for i in range(40)]
        self.model_w = _zipf_weights(40, 1.2)
        self.versions = {
            m: [f"{1 + i // 3}.{i % 3}.0" for i in range(self.rng.randint(1, 6))]
            for m in self.models
        }
        self.mode_w = _zipf_weights(len(MODES), 1.1)
        self.sources = [f"stream-{i:02d}" for i in range(12)]
        self.source_w = _zipf_weights(12, 1.0)
        self.texts = _texts()
        self.now = datetime(2026, 11, 1, tzinfo=UTC)
        self.counter = 0

    def case(self) -> dict[str, Any]:
        r = self.rng
        self.counter += 1
        model = r.choices(self.models, self.model_w)[0]
        versions = self.versions[model]
        version = r.choices(versions, list(range(1, len(versions) + 1)))[0]
        mode = r.choices(MODES, self.mode_w)[0]
        if self.texts:
            title, summary = r.choice(self.texts)
        else:
            title = " ".join(r.choices(WORDS, k=8))
            summary = " ".join(r.choices(WORDS, k=60))
        label = r.choice(["fraud", "legit", "spam", "ham", "cat", "dog", "toxic", "benign"])
        return {
            "external_id": f"gen-{self.counter}-{r.getrandbits(32):08x}",
            "title": title,
            "summary": summary,
            "model": {"name": model, "version": version},
            "data_source": r.choices(self.sources, self.source_w)[0],
            "occurred_at": (self.now - timedelta(seconds=r.randrange(90 * 86400))).isoformat(),
            "environment": {
                "region": r.choice(REGIONS),
                "app_version": f"7.{r.randrange(9)}.1",
                "hardware": r.choice(["cpu", "gpu-a10", "gpu-t4"]),
            },
            "input": {
                "amount": round(r.lognormvariate(4, 1), 2),
                "currency": "EUR",
                "merchant": f"m-{r.randrange(5000)}",
                "features": [r.random() for _ in range(6)],
            },
            "prediction": {"label": label, "score": round(r.betavariate(8, 2), 3)},
            "expected": {"label": r.choice(["fraud", "legit", "spam", "ham"])},
            "confidence": round(r.betavariate(8, 2), 3),
            "latency_ms": round(r.lognormvariate(3.7, 0.6), 1),
            "failure_mode": mode,
            "severity": r.choices(list(SEVERITY_WEIGHTS), list(SEVERITY_WEIGHTS.values()))[0],
            "signals": {
                "drift_score": round(r.random(), 3),
                "feature_changes": r.sample(
                    ["merchant_category", "amount", "country", "device", "hour"], 2
                ),
            },
            "tags": r.sample(["refunds", "night", "new-merchant", "mobile", "holiday", "vip"], 2),
            "sensitivity": r.choices(
                ["public", "internal", "confidential", "restricted"], [5, 80, 12, 3]
            )[0],
            "team": r.choice(TEAMS),
            "provenance": {
                "source": "bench-monitor",
                "pipeline_version": "2.1",
                "captured_by": "svc-monitor",
            },
        }

    def batch(self, n: int) -> list[dict[str, Any]]:
        return [self.case() for _ in range(n)]
