"""The drift statistics on the diabetes data, with fixed seeds.

The baseline is what ``ml.train`` saves for the demo's first model (three batches of 150 rows,
seed 11). Fresh batches from the same distribution (new seeds) must pass; shifted ones
(``ml.sample_data`` kind ``shifted``: bmi, bp and s5 moved by one standard deviation) must not.

The false-positive bound: a window drifts only if some feature's KS p-value is below
ks_p_value / features (Bonferroni), so under no drift its probability is at most ks_p_value
(0.05) by the union bound, whatever the sample size; the binned KS is conservative and the PSI
condition only lowers it further. Over 100 samples the test allows 5 (5 %).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from core.feedback.drift import BaselineError, Thresholds, binned_ks_statistic, compare, read_baseline
from ml.baseline import summarize
from ml.dataset import FEATURES
from ml.sample_data import make_batch

SAMPLES = 100
FP_BOUND = 0.05


@pytest.fixture(scope="module")
def baseline() -> dict:
    return summarize(np.vstack([make_batch(150, 11, "good", i)[0] for i in range(3)]))


def _rate(baseline: dict, kind: str, rows: int, seed0: int, thresholds: Thresholds) -> float:
    flagged = sum(compare(baseline, make_batch(rows, seed0 + k, kind)[0].tolist(), thresholds).drifted
                  for k in range(SAMPLES))
    return flagged / SAMPLES


@pytest.mark.parametrize("rows", [50, 200])
def test_fresh_samples_from_the_training_distribution_are_rarely_flagged(baseline, rows) -> None:
    rate = _rate(baseline, "good", rows, 1_000 + rows, Thresholds(min_samples=rows))
    print(f"\nfalse-positive rate over {SAMPLES} fresh samples of {rows} rows: {rate:.0%} (bound {FP_BOUND:.0%})")
    assert rate <= FP_BOUND


@pytest.mark.parametrize("rows", [50, 200])
def test_shifted_samples_are_flagged(baseline, rows) -> None:
    rate = _rate(baseline, "shifted", rows, 5_000 + rows, Thresholds(min_samples=rows))
    print(f"\ndetection rate over {SAMPLES} shifted samples of {rows} rows: {rate:.0%}")
    assert rate == 1.0


def test_a_shifted_sample_names_the_shifted_features(baseline) -> None:
    report = compare(baseline, make_batch(200, 7, "shifted")[0].tolist(), Thresholds())
    assert report.drifted and {f.name for f in report.breached} == {"bmi", "bp", "s5"}
    figures = report.figures()
    assert figures["bmi"]["psi"] > 0.5 and figures["bmi"]["p"] < 1e-6
    assert figures["age"]["psi"] < 0.2 and not figures["age"]["breached"]
    assert list(figures) == list(FEATURES)


def test_binned_ks_never_exceeds_the_exact_statistic(baseline) -> None:
    """The conservative claim of the docstring, checked against scipy's exact two-sample D on the rows
    the baseline was built from."""
    train = np.vstack([make_batch(150, 11, "good", i)[0] for i in range(3)])
    features = read_baseline(baseline)
    for seed, kind in [(3, "good"), (4, "shifted"), (5, "good")]:
        X = make_batch(120, seed, kind)[0]
        for i, f in enumerate(features):
            exact = ks_2samp(train[:, i], X[:, i]).statistic
            assert binned_ks_statistic(f, sorted(X[:, i].tolist())) <= exact + 1e-12


def test_too_few_samples_is_no_verdict(baseline) -> None:
    report = compare(baseline, make_batch(20, 1, "shifted")[0].tolist(), Thresholds(min_samples=50))
    assert not report.drifted and report.features == () and "fewer than the 50" in report.reason


def test_min_features_raises_the_bar(baseline) -> None:
    rows = make_batch(200, 9, "shifted")[0].tolist()
    assert compare(baseline, rows, Thresholds(min_features=3)).drifted
    assert not compare(baseline, rows, Thresholds(min_features=4)).drifted


def test_malformed_rows_are_left_out_and_counted(baseline) -> None:
    rows = make_batch(60, 2, "good")[0].tolist()
    report = compare(baseline, [*rows, [1.0, 2.0], [float("nan")] * len(FEATURES)], Thresholds(min_samples=60))
    assert report.samples == 60 and report.rejected == 2


def test_values_outside_the_training_range_count_in_the_outer_bins(baseline) -> None:
    rows = make_batch(100, 3, "good")[0]
    rows[:, FEATURES.index("bmi")] = 10.0  # far above any training value
    report = compare(baseline, rows.tolist(), Thresholds(min_samples=100))
    bmi = report.figures()["bmi"]
    assert bmi["breached"] and bmi["ks"] == pytest.approx(1.0)


@pytest.mark.parametrize("doc, field", [
    ({}, "baseline.features"),
    ({"features": {"age": {"edges": [0.0], "counts": []}}}, "baseline.features.age.edges"),
    ({"features": {"age": {"edges": [0.0, 1.0], "counts": [1, 2]}}}, "baseline.features.age.counts"),
    ({"features": {"age": {"edges": [1.0, 0.0], "counts": [3]}}}, "baseline.features.age.edges"),
])
def test_a_bad_baseline_names_the_field(doc, field) -> None:
    with pytest.raises(BaselineError, match=field.replace(".", r"\.")):
        compare(doc, [[0.5]], Thresholds(min_samples=1))
