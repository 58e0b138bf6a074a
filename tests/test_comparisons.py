"""The tests' own comparison (tests/comparisons.py): a NaN or an infinity where the other side has a number fails."""
import numpy as np
import pytest

from comparisons import assert_close


@pytest.mark.parametrize("ours, reference", [
    ([np.nan, 2.0], [1.0, 2.0]),  # a kernel that wrote NaN (a NaN difference compares false with any bound)
    ([1.0, 2.0], [np.nan, 2.0]),
    ([np.inf, 2.0], [1.0, 2.0]),
    ([np.inf, 2.0], [-np.inf, 2.0]),
    ([np.nan, 2.0], [np.inf, 2.0]),
])
def test_a_nan_or_an_infinity_against_anything_else_fails(ours, reference):
    with pytest.raises(AssertionError, match="NaNs or infinities"):
        assert_close(np.array(ours), np.array(reference), 1e-3)


def test_the_same_nans_and_infinities_and_close_numbers_pass():
    assert_close(np.array([np.nan, np.inf, -np.inf, 1.0]), np.array([np.nan, np.inf, -np.inf, 1.0 + 1e-9]), 1e-6)
    assert_close(np.arange(4), np.arange(4), 0.0)
    with pytest.raises(AssertionError, match="largest difference"):
        assert_close(np.array([np.nan, 1.1]), np.array([np.nan, 1.0]), 1e-3)
