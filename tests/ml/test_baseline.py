import numpy as np
import pytest

from ml.baseline import quantile_histogram, summarize


def test_continuous_column_gets_equal_frequency_bins():
    edges, counts = quantile_histogram(np.arange(100.0))
    assert len(edges) == 11
    assert counts == [10] * 10
    assert edges[0] == 0.0 and edges[-1] == 99.0


def test_few_distinct_values_get_one_bin_each():
    edges, counts = quantile_histogram(np.array([1.0, 1.0, 1.0, 2.0, 5.0, 5.0]))
    assert edges == [1.0, 1.5, 3.5, 5.0]
    assert counts == [3, 1, 2]


def test_constant_column():
    assert quantile_histogram(np.full(7, 3.0)) == ([3.0, 3.0], [7])


def test_summarize_rejects_wrong_shape():
    with pytest.raises(ValueError, match="expected a non-empty"):
        summarize(np.zeros((3, 4)))
