"""Min-max normalisation over candidates and the (1 - α)·model + α·genre blend."""
import math

import pytest
import torch

from nostrade.blend import blend, mix, normalise


def test_normalise_maps_the_masked_range_to_0_1():
    scores = torch.tensor([[2.0, 4.0, 6.0, 100.0], [-1.0, 0.0, 1.0, -50.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, False]])
    out = normalise(scores, mask)
    torch.testing.assert_close(out[:, :3], torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]]))
    assert out[0, 3] > 1 and out[1, 3] < 0  # outside the mask: same affine map, not clipped


def test_normalise_nan_is_no_opinion_and_scores_0():
    out = normalise(torch.tensor([[1.0, math.nan, 3.0]]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, 1.0]]))


@pytest.mark.parametrize("row", [[5.0, 5.0, 5.0], [math.nan, math.nan, math.nan]])
def test_normalise_constant_or_empty_rows_are_zero(row):
    assert torch.equal(normalise(torch.tensor([row])), torch.zeros(1, 3))


def test_normalise_empty_mask_is_zero():
    assert torch.equal(normalise(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2, dtype=torch.bool)), torch.zeros(1, 2))


def test_blend_is_the_weighted_sum_of_normalised_parts():
    model = torch.tensor([[10.0, 20.0, 30.0]])  # logits: normalised to 0, .5, 1
    genre = torch.tensor([[0.9, 0.1, 0.5]])  # cosines: normalised to 1, 0, .5
    torch.testing.assert_close(blend(model, genre, 0.25), torch.tensor([[0.25, 0.375, 0.875]]))
    torch.testing.assert_close(blend(model, genre, 0.0), normalise(model))
    torch.testing.assert_close(blend(model, genre, 1.0), normalise(genre))
    torch.testing.assert_close(mix(normalise(model), normalise(genre), 0.25), blend(model, genre, 0.25))


def test_blend_is_invariant_to_the_scale_of_each_part():
    model, genre = torch.randn(3, 50), torch.rand(3, 50)
    torch.testing.assert_close(blend(model, genre, 0.3), blend(7 * model - 3, 0.5 * genre + 2, 0.3))


@pytest.mark.parametrize("alpha", [-0.1, 1.01, math.nan])
def test_blend_rejects_alpha_outside_0_1(alpha):
    with pytest.raises(ValueError, match="alpha"):
        blend(torch.zeros(1, 2), torch.zeros(1, 2), alpha)
