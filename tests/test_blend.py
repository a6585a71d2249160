"""Min-max normalisation over candidates and the (1 - α)·model + α·genre blend."""
import math

import pytest
import numpy as np

from nostrade.blend import blend, mix, normalise


def test_normalise_maps_the_masked_range_to_0_1():
    scores = np.array([[2.0, 4.0, 6.0, 100.0], [-1.0, 0.0, 1.0, -50.0]])
    mask = np.array([[True, True, True, False], [True, True, True, False]])
    out = normalise(scores, mask)
    np.testing.assert_allclose(out[:, :3], np.array([[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]]), rtol=1e-5, atol=1e-6)
    assert out[0, 3] > 1 and out[1, 3] < 0  # outside the mask: same affine map, not clipped


def test_normalise_nan_is_no_opinion_and_scores_0():
    out = normalise(np.array([[1.0, math.nan, 3.0]]))
    np.testing.assert_allclose(out, np.array([[0.0, 0.0, 1.0]]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("row", [[5.0, 5.0, 5.0], [math.nan, math.nan, math.nan]])
def test_normalise_constant_or_empty_rows_are_zero(row):
    assert np.array_equal(normalise(np.array([row])), np.zeros((1, 3)))


@pytest.mark.parametrize("row", [[-math.inf, 1.0, 2.0], [1.0, 2.0, math.inf], [math.inf, math.inf, math.inf]])
def test_normalise_rows_with_an_infinite_bound_are_zero(row):
    with np.errstate(invalid="ignore"):
        assert np.array_equal(normalise(np.array([row])), np.zeros((1, 3)))


def test_normalise_empty_mask_is_zero():
    assert np.array_equal(normalise(np.array([[1.0, 2.0]]), np.zeros((1, 2), dtype=bool)), np.zeros((1, 2)))


def test_blend_is_the_weighted_sum_of_normalised_parts():
    model = np.array([[10.0, 20.0, 30.0]])  # logits: normalised to 0, .5, 1
    genre = np.array([[0.9, 0.1, 0.5]])  # cosines: normalised to 1, 0, .5
    np.testing.assert_allclose(blend(model, genre, 0.25), np.array([[0.25, 0.375, 0.875]]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(blend(model, genre, 0.0), normalise(model), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(blend(model, genre, 1.0), normalise(genre), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mix(normalise(model), normalise(genre), 0.25), blend(model, genre, 0.25), rtol=1e-5, atol=1e-6)


def test_blend_is_invariant_to_the_scale_of_each_part():
    model, genre = np.random.default_rng(0).normal(size=(3, 50)), np.random.default_rng(1).random((3, 50))
    np.testing.assert_allclose(blend(model, genre, 0.3), blend(7 * model - 3, 0.5 * genre + 2, 0.3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alpha", [-0.1, 1.01, math.nan])
def test_blend_rejects_alpha_outside_0_1(alpha):
    with pytest.raises(ValueError, match="alpha"):
        blend(np.zeros((1, 2)), np.zeros((1, 2)), alpha)
