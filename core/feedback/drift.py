"""Per-feature drift of production inputs against a model's training baseline.

The baseline is ``baseline.json``, which ``ml.train`` writes next to every model: per feature,
equal-frequency bin edges over the training data and the training counts in each bin
(``ml/baseline.py``). Two figures per feature:

- **Population stability index** over those bins: sum of (p - q) * ln(p / q), with p the
  production share and q the training share of each bin (both smoothed by half a count, so an
  empty bin is large but finite). It measures how far the distribution moved.
- **Two-sample Kolmogorov-Smirnov test**, computed from the binned training CDF. The baseline
  holds bins, not rows, and keeping it that way is deliberate (the package stays small and free
  of training records), so the statistic is the largest gap between the training CDF and the
  production CDF *at the bin edges*, where the training CDF is known exactly from the counts.
  That is the supremum over a subset of the points the exact statistic ranges over, so it is
  never larger than the exact D, and its p-value (scipy's ``kstwo`` with the effective size
  n*m/(n+m), as ``scipy.stats.ks_2samp`` does for large samples) is conservative: the test
  flags no more often than the exact one under no drift, at some loss of power for changes
  that stay inside one bin (a tenth of the data). For a two-valued feature (``sex``) the edges
  sit between the values, so the binned CDF is the exact one.

A feature **breaches** when it moved far (PSI at or above the threshold) *and* the move is
significant (KS p-value below ``ks_p_value`` divided by the number of features: Bonferroni).
So under no drift, whatever the sample size, the chance that any feature breaches is at most
``ks_p_value`` (the union bound over the features' tests); the PSI half only lowers it. The
window **drifts** when at least ``min_features`` features breach and it had ``min_samples``
inputs. Production rows are lists of numbers in the baseline's feature order (``feature_names``:
the drift check reads the collected data in that order, whatever order a record's keys came in).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

SMOOTHING = 0.5  # counts added to every bin before taking shares


class BaselineError(ValueError):
    """The baseline document is not what ``ml.train`` writes; the message names the field."""


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.2  # the usual reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 large
    ks_p_value: float = 0.05  # family-wise, over all features
    min_samples: int = 200
    min_features: int = 1


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    ks_statistic: float
    ks_p_value: float
    breached: bool

    def figures(self) -> dict[str, Any]:
        return {"psi": round(self.psi, 4), "ks": round(self.ks_statistic, 4),
                "p": float(f"{self.ks_p_value:.3g}"), "breached": self.breached}


@dataclass(frozen=True)
class DriftReport:
    samples: int
    rejected: int  # rows of the wrong width or with a non-finite value, left out
    features: tuple[FeatureDrift, ...]
    drifted: bool
    reason: str

    @property
    def breached(self) -> tuple[FeatureDrift, ...]:
        return tuple(f for f in self.features if f.breached)

    def figures(self) -> dict[str, Any]:
        return {f.name: f.figures() for f in self.features}


@dataclass(frozen=True)
class _Feature:
    name: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)


def compare(baseline: Mapping[str, Any], rows: Sequence[Sequence[float]], thresholds: Thresholds) -> DriftReport:
    """The drift report of ``rows`` (production inputs) against ``baseline`` (``baseline.json``)."""
    features = read_baseline(baseline)
    kept = [list(map(float, r)) for r in rows
            if len(r) == len(features) and all(isinstance(v, int | float) and math.isfinite(v) for v in r)]
    rejected = len(rows) - len(kept)
    if len(kept) < thresholds.min_samples:
        return DriftReport(len(kept), rejected, (), False,
                           f"{len(kept)} inputs, fewer than the {thresholds.min_samples} a check needs")
    alpha = thresholds.ks_p_value / len(features)
    results = tuple(_feature_drift(f, sorted(r[i] for r in kept), thresholds.psi, alpha)
                    for i, f in enumerate(features))
    breached = [f.name for f in results if f.breached]
    drifted = len(breached) >= thresholds.min_features
    reason = (f"{len(breached)} of {len(results)} features drifted ({', '.join(breached) or 'none'}); "
              f"{thresholds.min_features} needed")
    return DriftReport(len(kept), rejected, results, drifted, reason)


def feature_names(baseline: Mapping[str, Any]) -> list[str]:
    """The baseline's features in its order: the order ``compare`` reads each row's values in."""
    return [f.name for f in read_baseline(baseline)]


def read_baseline(doc: Mapping[str, Any]) -> list[_Feature]:
    features = doc.get("features") if isinstance(doc, Mapping) else None
    if not isinstance(features, Mapping) or not features:
        raise BaselineError("baseline.features: missing or empty")
    return [_read_feature(str(name), raw) for name, raw in features.items()]


def _read_feature(name: str, raw: Any) -> _Feature:
    where = f"baseline.features.{name}"
    edges, counts = (raw.get("edges"), raw.get("counts")) if isinstance(raw, Mapping) else (None, None)
    if not isinstance(edges, list) or not all(isinstance(e, int | float) for e in edges) or len(edges) < 2:
        raise BaselineError(f"{where}.edges: a list of at least two numbers")
    if not isinstance(counts, list) or len(counts) != len(edges) - 1 \
            or not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) == 0:
        raise BaselineError(f"{where}.counts: one non-negative count per bin ({len(edges) - 1}), not all zero")
    if any(b < a for a, b in pairwise(edges)):
        raise BaselineError(f"{where}.edges: must not decrease")
    return _Feature(name, tuple(float(e) for e in edges), tuple(counts))


def _feature_drift(f: _Feature, values: list[float], psi_threshold: float, alpha: float) -> FeatureDrift:
    psi = population_stability(f, values)
    d = binned_ks_statistic(f, values)
    p = ks_p_value(d, len(values), f.total)
    return FeatureDrift(f.name, psi, d, p, psi >= psi_threshold and p < alpha)


def population_stability(f: _Feature, values: list[float]) -> float:
    """PSI over the baseline's bins; values outside the training range count in the outer bins."""
    inner = f.edges[1:-1]
    production = [0] * len(f.counts)
    for v in values:
        production[bisect_right(inner, v)] += 1
    k = len(f.counts)
    psi = 0.0
    for c_prod, c_base in zip(production, f.counts, strict=True):
        p = (c_prod + SMOOTHING) / (len(values) + SMOOTHING * k)
        q = (c_base + SMOOTHING) / (f.total + SMOOTHING * k)
        psi += (p - q) * math.log(p / q)
    return psi


def binned_ks_statistic(f: _Feature, ordered: list[float]) -> float:
    """Largest gap between the training and production CDFs at the bin edges (``ordered`` sorted).

    The training CDF just below each edge is the count of the bins before it (numpy's histogram
    bins are closed on the left); at the top edge it is 1 (the last bin is closed on both sides)."""
    n = len(ordered)
    gaps = []
    below = 0
    for i, edge in enumerate(f.edges[:-1]):
        gaps.append(abs(below / f.total - bisect_left(ordered, edge) / n))
        below += f.counts[i]
    gaps.append(abs(1.0 - bisect_right(ordered, f.edges[-1]) / n))
    return max(gaps)


def ks_p_value(d: float, n: int, m: int) -> float:
    """Two-sided p-value of a two-sample KS statistic, Smirnov's large-sample form (as ks_2samp's
    'asymp' mode computes it). scipy is loaded here, on the first check, not at import."""
    from scipy.stats import kstwo

    effective = round(n * m / (n + m))
    return float(kstwo.sf(d, max(effective, 1)))
