"""Item 5: agreement figures checked against independent implementations (scikit-learn's
Cohen's kappa, statsmodels' Fleiss' kappa, the krippendorff package) on the real CSETv1
annotations of the AI Incident Database."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from services.annotation import agreement as stats
from services.annotation.aiid_import import read_jsonl, taxonomy_fields
from tests.corpus import CORPORA

FIELD = "AI Harm Level"


def _harm_levels() -> dict[str, dict[str, str]]:
    """annotator -> incident -> AI Harm Level (non-empty), as published."""
    out: dict[str, dict[str, str]] = {}
    for n in (1, 2, 3):
        for rec in read_jsonl(CORPORA / f"aiid_classifications_CSETv1_Annotator-{n}.jsonl"):
            if rec[FIELD]:
                out.setdefault(rec["Namespace"], {})[rec["Incident ID"]] = rec[FIELD]
    return out


@pytest.fixture(scope="module")
def levels() -> dict[str, dict[str, str]]:
    return _harm_levels()


@pytest.fixture(scope="module")
def ratings(levels) -> list[stats.Rating]:
    return [stats.Rating(i, a, v) for a, per in levels.items() for i, v in per.items()]


def test_cohen_per_pair_matches_scikit_learn(levels, ratings):
    report = stats.agreement(ratings, "nominal", resamples=200)
    pairs = {(p.a, p.b): p for p in report.pairs}
    assert len(pairs) >= 2
    for (a, b), pair in pairs.items():
        shared = sorted(set(levels[a]) & set(levels[b]))
        assert pair.n == len(shared)
        expected = cohen_kappa_score([levels[a][i] for i in shared], [levels[b][i] for i in shared])
        assert pair.kappa.value == pytest.approx(expected, abs=1e-12)
        assert pair.kappa.low <= pair.kappa.value <= pair.kappa.high
    one_two = pairs[("CSETv1_Annotator-1", "CSETv1_Annotator-2")]
    assert one_two.n >= 80 and 0.0 < one_two.kappa.value < 1.0  # real disagreement


def test_fleiss_matches_statsmodels_with_a_constant_number_of_raters(levels):
    a, b = "CSETv1_Annotator-1", "CSETv1_Annotator-3"
    shared = sorted(set(levels[a]) & set(levels[b]))
    ratings = [stats.Rating(i, c, levels[c][i]) for c in (a, b) for i in shared]
    report = stats.agreement(ratings, "nominal", resamples=200)
    table, _ = aggregate_raters(np.array([[levels[a][i], levels[b][i]] for i in shared]))
    assert report.fleiss.value == pytest.approx(fleiss_kappa(table), abs=1e-12)
    assert report.fleiss.n == len(shared)
    assert report.fleiss.low <= report.fleiss.value <= report.fleiss.high


def test_krippendorff_matches_the_package_computed_independently(levels, ratings):
    report = stats.agreement(ratings, "nominal", resamples=200)
    incidents = sorted({i for per in levels.values() for i in per})
    categories = sorted({v for per in levels.values() for v in per.values()})
    code = {v: k for k, v in enumerate(categories)}
    matrix = np.array(
        [[code.get(levels[a].get(i), np.nan) for i in incidents] for a in sorted(levels)],
        dtype=float,
    )
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert report.alpha.value == pytest.approx(expected, abs=1e-9)
    # Our own coincidence-matrix form (what the bootstrap uses) gives the same figure.
    enc = stats.encode(ratings)
    counts = stats.value_counts(enc)
    pairable = counts[counts.sum(1) >= 2]
    own = stats._alpha_from(
        np.ones((1, len(pairable))), pairable, "nominal", 1 - np.eye(len(enc.categories))
    )[0]
    assert own == pytest.approx(expected, abs=1e-9)
    assert report.alpha.n == len(pairable)
    assert report.alpha.low < report.alpha.value < report.alpha.high


def test_ordinal_alpha_matches_the_package_and_its_bootstrap_centres_on_it():
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 5, 400)
    grades = ["S0", "S1", "S2", "S3", "S4"]
    ratings = []
    for u, t in enumerate(truth):
        for c in range(3):
            if rng.random() < 0.85:
                noisy = int(np.clip(t + rng.integers(-1, 2), 0, 4))
                ratings.append(stats.Rating(f"case-{u}", f"annotator-{c}", grades[noisy]))
    report = stats.agreement(ratings, "ordinal", order=grades, resamples=500)
    matrix = np.full((3, 400), np.nan)
    for r in ratings:
        matrix[int(r.coder[-1]), int(r.unit[5:])] = grades.index(r.value)
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal")
    assert report.alpha.value == pytest.approx(expected, abs=1e-9)
    enc = stats.encode(ratings, grades)
    counts = stats.value_counts(enc)
    pairable = counts[counts.sum(1) >= 2]
    own = stats._alpha_from(np.ones((1, len(pairable))), pairable, "ordinal", None)[0]
    assert own == pytest.approx(expected, abs=1e-9)
    assert report.alpha.low < expected < report.alpha.high
    assert report.alpha.high - report.alpha.low < 0.15
    # Ordinal credits near misses: above nominal on the same near-miss noise.
    assert report.alpha.value > stats.agreement(ratings, "nominal", resamples=0).alpha.value


def test_set_valued_fields_use_the_jaccard_distance():
    same = [stats.Rating(f"u{i}", c, ("a", "b")) for i in range(5) for c in ("x", "y")]
    assert (
        stats.agreement(
            [*same, stats.Rating("u9", "x", ("c",)), stats.Rating("u9", "y", ("c",))],
            "set",
            resamples=0,
        ).alpha.value
        == 1.0
    )
    # Singleton sets are nominal categories: Jaccard distance 1 between different ones.
    singles = [
        stats.Rating(f"u{i}", c, (v,))
        for i, row in enumerate([("a", "a"), ("a", "b"), ("b", "b"), ("c", "c"), ("c", "a")])
        for c, v in zip(("x", "y"), row, strict=True)
    ]
    nominal = [stats.Rating(r.unit, r.coder, r.value[0]) for r in singles]
    assert stats.agreement(singles, "set", resamples=0).alpha.value == pytest.approx(
        stats.agreement(nominal, "nominal", resamples=0).alpha.value
    )
    # Partial overlap counts as partial agreement.
    partial = [
        stats.Rating("u1", "x", ("a", "b")),
        stats.Rating("u1", "y", ("a",)),
        stats.Rating("u2", "x", ("c",)),
        stats.Rating("u2", "y", ("c",)),
    ]
    disjoint = [
        stats.Rating("u1", "x", ("a", "b")),
        stats.Rating("u1", "y", ("d",)),
        stats.Rating("u2", "x", ("c",)),
        stats.Rating("u2", "y", ("c",)),
    ]
    assert (
        stats.agreement(partial, "set", resamples=0).alpha.value
        > stats.agreement(disjoint, "set", resamples=0).alpha.value
    )


def test_distribution_and_months(ratings):
    from datetime import UTC, datetime

    dated = [
        stats.Rating(r.unit, r.coder, r.value, datetime(2024, 1 + int(r.unit) % 2, 5, tzinfo=UTC))
        for r in ratings
    ]
    report = stats.agreement(dated, "nominal", resamples=0)
    one = report.distribution["CSETv1_Annotator-1"]
    assert one["none"] == sum(1 for r in ratings if r.coder.endswith("-1") and r.value == "none")
    assert {m.month for m in report.by_month} <= {"2024-01", "2024-02"}
    assert sum(m.n for m in report.by_month) == report.n


def test_aiid_taxonomy_fields_are_imported_as_they_are():
    taxa = {r["namespace"]: r for r in read_jsonl(CORPORA / "aiid_taxa.jsonl")}
    cset = {f.name: f for f in taxonomy_fields(taxa["CSETv1"]["field_list"])}
    assert len(cset) == len(taxa["CSETv1"]["field_list"])
    assert "AI System (2)" in cset  # the repeated header, keyed as the exports key it
    harm = cset[FIELD]
    assert harm.type == "enum" and "AI tangible harm near-miss" in harm.permitted_values
    assert cset["Harm Distribution Basis"].type == "multi_enum"
    assert cset["Entities"].type == "object_list" and cset["Entities"].subfields
    gmf = taxonomy_fields(taxa["GMF"]["field_list"])
    assert len(gmf) == len(taxa["GMF"]["field_list"])


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers, 12 units.
KRIPPENDORFF_2011 = [
    "1 2 3 3 2 1 4 1 2 . . .",
    "1 2 3 3 2 2 4 1 2 5 . 3",
    ". 3 3 3 2 3 4 2 2 5 1 .",
    "1 2 3 3 2 4 4 1 2 5 1 .",
]
# Fleiss (1971) as Wikipedia tabulates it: 10 subjects, 14 raters each, 5 categories.
FLEISS_1971 = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]  # fmt: skip


def test_published_examples():
    """The textbook figures: Krippendorff's alpha .743 nominal and .815 ordinal, Fleiss'
    kappa .210, Cohen's kappa .4 (20 yes-yes, 5 yes-no, 10 no-yes, 15 no-no)."""
    kripp = [
        stats.Rating(f"unit-{u}", f"observer-{o}", value)
        for o, line in enumerate(KRIPPENDORFF_2011)
        for u, value in enumerate(line.split())
        if value != "."
    ]
    assert round(stats.agreement(kripp, "nominal", resamples=0).alpha.value, 3) == 0.743
    ordinal = stats.agreement(kripp, "ordinal", order=list("12345"), resamples=0)
    assert round(ordinal.alpha.value, 3) == 0.815
    assert ordinal.n == 11  # unit 12 has one value: no pairable unit

    fleiss = [
        stats.Rating(f"subject-{s}", f"rater-{r}", category)
        for s, row in enumerate(FLEISS_1971)
        for r, category in enumerate(c for c, k in enumerate(row) for _ in range(k))
    ]
    assert round(stats.agreement(fleiss, "nominal", resamples=0).fleiss.value, 3) == 0.210

    cells = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10
    cells += [("no", "no")] * 15
    cohen = [
        stats.Rating(f"proposal-{i}", who, value)
        for i, pair in enumerate(cells)
        for who, value in zip(("a", "b"), pair, strict=True)
    ]
    [pair] = stats.agreement(cohen, "nominal", resamples=0).pairs
    assert pair.n == 50 and pair.kappa.value == pytest.approx(0.4)


@pytest.mark.parametrize("seed", range(20))
def test_alpha_and_fleiss_equal_the_packages_on_random_ratings_and_per_month(seed):
    """Random ratings (missing values, units with a single value, few categories): alpha
    equals the krippendorff package's, overall and for each month's units; Fleiss' kappa
    equals statsmodels' when every unit has the same number of raters."""
    from datetime import UTC, datetime

    rng = np.random.default_rng(seed)
    units, coders, k = int(rng.integers(5, 60)), int(rng.integers(2, 6)), int(rng.integers(2, 5))
    level = "ordinal" if seed % 2 else "nominal"
    matrix = rng.integers(0, k, (coders, units)).astype(float)
    matrix[rng.random((coders, units)) < 0.3] = np.nan
    month = rng.integers(1, 4, units)
    ratings = [
        stats.Rating(
            f"u{u}", f"c{c}", f"v{int(matrix[c, u])}", datetime(2025, month[u], 1, tzinfo=UTC)
        )
        for c in range(coders)
        for u in range(units)
        if not np.isnan(matrix[c, u])
    ]
    order = [f"v{i}" for i in range(k)]
    report = stats.agreement(ratings, level, order=order, resamples=0)

    def package(columns: np.ndarray) -> float:
        if (np.sum(~np.isnan(columns), 0) >= 2).sum() == 0:
            return float("nan")
        with np.errstate(divide="ignore", invalid="ignore"):  # no variation: NaN
            return krippendorff.alpha(
                reliability_data=columns, level_of_measurement=level, value_domain=range(k)
            )

    expected = package(matrix)
    assert report.alpha.value == pytest.approx(expected, abs=1e-12, nan_ok=True) or (
        report.alpha.value is None and np.isnan(expected)
    )
    by_month = {m.month: m for m in report.by_month}
    for m in range(1, 4):
        columns = matrix[:, month == m]
        n = int((np.sum(~np.isnan(columns), 0) >= 2).sum())
        if not n:
            assert f"2025-0{m}" not in by_month
            continue
        got = by_month[f"2025-0{m}"]
        assert got.n == n
        value = package(columns)
        assert (got.alpha is None and np.isnan(value)) or got.alpha == pytest.approx(
            value, abs=1e-12
        )

    full = np.all(~np.isnan(matrix), 0)
    if full.sum() >= 2:
        dense = [r for r in ratings if full[int(r.unit[1:])]]
        table, _ = aggregate_raters(matrix[:, full].T)
        got = stats.agreement(dense, level, order=order, resamples=0).fleiss.value
        assert got == pytest.approx(fleiss_kappa(table), abs=1e-12, nan_ok=True)
