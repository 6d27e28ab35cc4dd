"""Agreement statistics over (unit, coder, value) ratings: Cohen's kappa per coder pair,
Fleiss' kappa and Krippendorff's alpha, each with n and a bootstrap 95% interval.

Vectorised with numpy. Alpha and Fleiss' kappa depend on a unit only through its value
counts, and units with the same counts are interchangeable: both are computed once over the
distinct count patterns (a few hundred at most for a small value set) weighted by how many
units have each, for the point value, for each month, and for the bootstrap, which draws a
resample of units as multinomial counts over the patterns (the same distribution as drawing
units one by one at a fraction of the cost). A coder pair's kappa depends only on its
confusion matrix, so its resamples are multinomial draws over the cells.

Krippendorff's alpha is computed here from the coincidence matrix (nominal, ordinal, and
set-valued fields with the Jaccard distance); the tests check it equals the `krippendorff`
package's figure and Krippendorff's published examples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from typing import Any, Literal

import numpy as np

Level = Literal["nominal", "ordinal", "set"]
RESAMPLES = 1000
CHUNK = 250  # bootstrap replicates per matrix product: bounds memory, keeps BLAS busy


@dataclass(frozen=True, slots=True)
class Rating:
    unit: str
    coder: str
    value: Hashable  # a string, or a sorted tuple for set-valued fields
    at: datetime | None = None


@dataclass(slots=True)
class Columns:
    """Ratings as parallel columns (what a database answer is): no object per rating.
    `months` holds "YYYY-MM" of each rating (None when unknown)."""

    units: list[str]
    coders: list[str]
    values: list[Hashable]
    months: list[str | None]

    @classmethod
    def of(cls, ratings: Sequence[Rating]) -> Columns:
        return cls(
            [r.unit for r in ratings],
            [r.coder for r in ratings],
            [r.value for r in ratings],
            [r.at.strftime("%Y-%m") if r.at else None for r in ratings],
        )

    def __len__(self) -> int:
        return len(self.units)


@dataclass(slots=True)
class Estimate:
    value: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0


@dataclass(slots=True)
class PairKappa:
    a: str
    b: str
    n: int
    kappa: Estimate


@dataclass(slots=True)
class MonthAgreement:
    month: str
    n: int
    alpha: float | None


@dataclass(slots=True)
class AgreementReport:
    level: Level
    n: int
    pairs: list[PairKappa]
    fleiss: Estimate
    alpha: Estimate
    distribution: dict[str, dict[str, int]] = field(default_factory=dict)
    by_month: list[MonthAgreement] = field(default_factory=list)


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _interval(samples: np.ndarray) -> tuple[float | None, float | None]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None, None
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


# --- encoding -------------------------------------------------------------------------------
@dataclass(slots=True)
class Encoded:
    units: np.ndarray  # unit index per rating
    coders: np.ndarray  # coder index per rating
    values: np.ndarray  # category index per rating
    n_units: int
    coder_names: list[str]
    categories: list[Hashable]


def _codes(column: list[Any], key: Any = None, order: Sequence[Any] | None = None) -> Any:
    """(codes, names): names sorted (by `key`; values of `order` first, in its order), each
    item's code its name's index. One dict lookup per item, in first-seen order, then a
    renumbering of the few distinct names in numpy."""
    first, index = _first_seen(column)
    seen = list(index)
    if order is not None:
        ordered = [v for v in order if v in index]
        names = ordered + sorted(set(seen) - set(ordered), key=key)
    else:
        names = sorted(seen, key=key)
    rank = np.empty(len(seen), dtype=np.int64)
    rank[[index[name] for name in names]] = np.arange(len(names))
    return rank[first], names


def _first_seen(column: list[Any]) -> tuple[np.ndarray, dict[Any, int]]:
    """Codes by first appearance, and the code of each distinct item. The loops run in C
    (dict.fromkeys, map), not one Python step per item."""
    index: dict[Any, int] = dict.fromkeys(column)  # type: ignore[arg-type]
    for code, name in enumerate(index):
        index[name] = code
    codes = np.fromiter(map(index.__getitem__, column), dtype=np.int64, count=len(column))
    return codes, index


def encode(ratings: Sequence[Rating] | Columns, order: Sequence[Hashable] | None = None) -> Encoded:
    """Integer codes; an ordinal field's categories keep `order` (first to last). Units are
    numbered as they come; coders and categories sorted."""
    cols = ratings if isinstance(ratings, Columns) else Columns.of(ratings)
    units, unit_index = _first_seen(cols.units)  # units' order matters to no statistic
    coders, coder_names = _codes(cols.coders)
    values, categories = _codes(cols.values, str, order)
    return Encoded(units, coders, values, len(unit_index), coder_names, categories)


def value_counts(enc: Encoded) -> np.ndarray:
    """units x categories: how many coders gave each value to each unit."""
    k = len(enc.categories)
    flat = np.bincount(enc.units * k + enc.values, minlength=enc.n_units * k)
    return flat.reshape(enc.n_units, k).astype(np.float64)


@dataclass(slots=True)
class Patterns:
    """The distinct value-count rows of the pairable units (>= 2 values), in lexicographic
    order (np.unique's, so resamples draw exactly as over np.unique(axis=0)), how many
    units have each, and each unit's pattern (-1: not pairable)."""

    rows: np.ndarray  # P x K
    freq: np.ndarray  # P
    of_unit: np.ndarray  # U

    @property
    def n(self) -> int:
        return int(self.freq.sum())


def patterns(counts: np.ndarray) -> Patterns:
    m = counts.sum(1)
    pairable = m >= 2
    of_unit = np.full(len(counts), -1, dtype=np.int64)
    rows = counts[pairable].astype(np.int64)
    k = counts.shape[1]
    if len(rows) == 0:
        return Patterns(np.zeros((0, k)), np.zeros(0, dtype=np.int64), of_unit)
    base = int(m.max()) + 1
    if k * np.log2(base) < 62:
        # Each row as one integer, first column most significant: the same order, and a
        # 1-D unique instead of a sort of rows.
        keys = rows @ (base ** np.arange(k - 1, -1, -1, dtype=np.int64))
        _, first, inverse, freq = np.unique(
            keys, return_index=True, return_inverse=True, return_counts=True
        )
        distinct = rows[first]
    else:
        distinct, inverse, freq = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    of_unit[pairable] = inverse.reshape(-1)
    return Patterns(distinct.astype(np.float64), freq, of_unit)


# --- distances ------------------------------------------------------------------------------
def jaccard_distances(categories: Sequence[Hashable]) -> np.ndarray:
    sets = [frozenset(c) if isinstance(c, tuple) else frozenset([c]) for c in categories]
    k = len(sets)
    out = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            union = len(sets[i] | sets[j])
            d = 1.0 - (len(sets[i] & sets[j]) / union if union else 1.0)
            out[i, j] = out[j, i] = d
    return out


def ordinal_distances(marginals: np.ndarray) -> np.ndarray:
    """Krippendorff's ordinal metric for each row of marginals (B x K) -> B x K x K:
    (sum of n_g for g from c to k, minus (n_c + n_k) / 2) squared."""
    cs = np.cumsum(marginals, axis=1)
    # between[c, k] = sum_{g=c}^{k} n_g for c <= k (symmetric)
    hi = cs[:, None, :]
    lo = cs[:, :, None] - marginals[:, :, None]
    between = np.abs(hi - lo)
    between = np.maximum(between, np.swapaxes(between, 1, 2))
    half = (marginals[:, :, None] + marginals[:, None, :]) / 2.0
    return (between - half) ** 2


# --- statistics over count patterns with weights ----------------------------------------------
def _alpha_from(
    weights: np.ndarray, counts: np.ndarray, level: Level, fixed: np.ndarray | None
) -> np.ndarray:
    """Krippendorff's alpha for each row of weights (B x P) over count patterns (P x K)."""
    m = counts.sum(1)
    marg = weights @ counts  # B x K: n_c
    n = marg.sum(1)
    if level == "ordinal":
        # The metric depends on each replicate's marginals: coincidences per replicate.
        k = counts.shape[1]
        outer = (counts[:, :, None] * counts[:, None, :]).reshape(len(counts), k * k)
        coinc = (weights @ (outer / (m - 1)[:, None])).reshape(-1, k, k)
        delta = ordinal_distances(marg)
        observed = (coinc * delta).sum((1, 2))
    else:
        per_unit = ((counts @ fixed) * counts).sum(1) / (m - 1)
        observed = weights @ per_unit
        delta = fixed[None]
    expected = ((marg[:, :, None] * marg[:, None, :]) * delta).sum((1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - (n - 1.0) * observed / expected


def _fleiss_from(weights: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Fleiss' kappa (generalised to a varying number of coders per unit; equal to Fleiss'
    when it is constant) for each row of weights over count patterns."""
    m = counts.sum(1)
    agree = ((counts**2).sum(1) - m) / (m * (m - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        p_mean = (weights @ agree) / weights.sum(1)
        share = (weights @ counts) / (weights @ m)[:, None]
        p_exp = (share**2).sum(1)
        return (p_mean - p_exp) / (1.0 - p_exp)


def _resampled(
    pat: Patterns, resamples: int, rng: np.random.Generator, statistic: Any
) -> np.ndarray:
    total = pat.n
    out = []
    for start in range(0, resamples, CHUNK):
        size = min(CHUNK, resamples - start)
        weights = rng.multinomial(total, pat.freq / total, size=size).astype(np.float64)
        out.append(statistic(weights, pat.rows))
    return np.concatenate(out) if out else np.empty(0)


def cohen_kappa(confusion: np.ndarray) -> np.ndarray:
    """Cohen's kappa for each confusion matrix (... x K x K)."""
    n = confusion.sum((-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        po = np.trace(confusion, axis1=-2, axis2=-1) / n
        pe = (confusion.sum(-1) * confusion.sum(-2)).sum(-1) / n**2
        return (po - pe) / (1.0 - pe)


# --- the report -----------------------------------------------------------------------------
def _fixed_distances(level: Level, categories: Sequence[Hashable]) -> np.ndarray | None:
    """The metric when it does not depend on the marginals (ordinal's does: None)."""
    if level == "set":
        return jaccard_distances(categories)
    if level == "nominal":
        return 1.0 - np.eye(len(categories))
    return None


def _alphas(
    weights: np.ndarray, pat: Patterns, level: Level, categories: Sequence[Hashable]
) -> np.ndarray:
    """Alpha for each row of weights over the patterns; NaN where undefined (no pairable
    unit, or a single category outside set-valued fields: no variation)."""
    if len(pat.rows) == 0 or len(categories) < 1 or (level != "set" and len(categories) == 1):
        return np.full(len(weights), np.nan)
    return _alpha_from(weights, pat.rows, level, _fixed_distances(level, categories))


def agreement(
    ratings: Sequence[Rating] | Columns,
    level: Level,
    *,
    order: Sequence[Hashable] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> AgreementReport:
    rng = np.random.default_rng(seed)
    if not len(ratings):
        return AgreementReport(level, 0, [], Estimate(None), Estimate(None))
    cols = ratings if isinstance(ratings, Columns) else Columns.of(ratings)
    enc = encode(cols, order if level == "ordinal" else None)
    pat = patterns(value_counts(enc))
    n_units = pat.n
    fixed = _fixed_distances(level, enc.categories)
    once = pat.freq[None].astype(np.float64)

    alpha_value = _alphas(once, pat, level, enc.categories)[0]
    fleiss_value = _fleiss_from(once, pat.rows)[0] if n_units else np.nan
    alpha_ci = fleiss_ci = (None, None)
    if resamples and n_units >= 2:
        alpha_ci = _interval(
            _resampled(pat, resamples, rng, lambda w, p: _alpha_from(w, p, level, fixed))
        )
        fleiss_ci = _interval(_resampled(pat, resamples, rng, _fleiss_from))

    return AgreementReport(
        level=level,
        n=n_units,
        pairs=_pairs(enc, resamples, rng),
        fleiss=Estimate(_num(fleiss_value), *fleiss_ci, n=n_units),
        alpha=Estimate(_num(alpha_value), *alpha_ci, n=n_units),
        distribution=_distribution(enc),
        by_month=_by_month(cols.months, enc, pat, level),
    )


def _pairs(enc: Encoded, resamples: int, rng: np.random.Generator) -> list[PairKappa]:
    k = len(enc.categories)
    n_units, n_coders = enc.n_units, len(enc.coder_names)
    grid = np.full((n_coders, n_units), -1, dtype=np.int64)
    grid[enc.coders, enc.units] = enc.values
    out = []
    for a, b in combinations(range(n_coders), 2):
        both = (grid[a] >= 0) & (grid[b] >= 0)
        n = int(both.sum())
        if n == 0:
            continue
        confusion = np.bincount(grid[a][both] * k + grid[b][both], minlength=k * k)
        kappa = cohen_kappa(confusion.reshape(k, k).astype(np.float64))
        low = high = None
        if resamples and n >= 2:
            draws = rng.multinomial(n, confusion / n, size=resamples).reshape(-1, k, k)
            low, high = _interval(cohen_kappa(draws.astype(np.float64)))
        out.append(
            PairKappa(
                enc.coder_names[a], enc.coder_names[b], n, Estimate(_num(kappa), low, high, n)
            )
        )
    return out


def _distribution(enc: Encoded) -> dict[str, dict[str, int]]:
    """Per coder, how often each value was given (each member of a set counts once)."""
    k = len(enc.categories)
    per_category = np.bincount(
        enc.coders * k + enc.values, minlength=len(enc.coder_names) * k
    ).reshape(len(enc.coder_names), k)
    out: dict[str, dict[str, int]] = {}
    for c, coder in enumerate(enc.coder_names):
        counts: Counter[str] = Counter()
        for v, category in enumerate(enc.categories):
            if per_category[c, v]:
                members = category if isinstance(category, tuple) else (category,)
                for member in members:
                    counts[str(member)] += int(per_category[c, v])
        out[coder] = dict(sorted(counts.items()))
    return out


def _by_month(
    months: list[str | None], enc: Encoded, pat: Patterns, level: Level
) -> list[MonthAgreement]:
    """Alpha per month of a unit's latest rating (no interval: months are small): each
    month's units weight the patterns, and one call computes every month's alpha."""
    per_rating, names = _codes(months, key=lambda m: m or "")
    # Unknown months (None, "") sort first: shifted below 0, they are never a unit's latest.
    unknown = sum(1 for m in names if not m)
    per_rating, known = per_rating - unknown, names[unknown:]
    if not known:
        return []
    latest = np.full(enc.n_units, -1, dtype=np.int64)
    np.maximum.at(latest, enc.units, per_rating)
    used = (pat.of_unit >= 0) & (latest >= 0)
    p = len(pat.rows)
    weights = np.bincount(latest[used] * p + pat.of_unit[used], minlength=len(known) * p).reshape(
        len(known), p
    )
    n = weights.sum(1)
    alphas = _alphas(weights.astype(np.float64), pat, level, enc.categories)
    return [
        MonthAgreement(month, int(n[i]), _num(alphas[i])) for i, month in enumerate(known) if n[i]
    ]
