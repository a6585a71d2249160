import numpy as np
import pytest
from model_contract import BLOCKS, ModelContract

from nostrade.baselines.ease import EASE
from nostrade.dataset import Dataset
from nostrade.sequences import DISLIKE, LIKE, Sequences


class TestEASE(ModelContract):
    def make_model(self, seed):
        return EASE(l2=1.0)


def test_weights_are_the_closed_form_with_a_zero_diagonal():
    x = np.array([[1, 1, 0, 0], [0, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0]], dtype=float)
    train = Sequences.from_lists([list(np.flatnonzero(row) + 1) for row in x])
    dataset = Dataset(BLOCKS.dataset.items.head(4), train, np.arange(len(x)), {"n_items": 4})
    model = EASE(l2=2.0).fit(dataset, train)
    p = np.linalg.inv(x.T @ x + 2.0 * np.eye(4))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(model.weights[1:, 1:], b, rtol=1e-5, atol=1e-6)
    assert not model.weights[0].any() and not model.weights[:, 0].any()  # padding
    np.testing.assert_allclose(model.score(Sequences.from_lists([[2, 4]])).numpy()[0, 1:], b[1] + b[3], rtol=1e-5)


def test_liked_targets_solve_the_constrained_ridge_regression_onto_the_liked_titles():
    """B minimises ||Y - XB||² + l2·||B||² with diag(B) = 0: G·B - XᵀY is diagonal (the constraint's multipliers);
    the input X holds every watched title, the targets Y only the liked ones."""
    x = np.array([[1, 1, 0, 0], [0, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0]], dtype=float)
    disliked = np.array([[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=float)
    events = [np.flatnonzero(row) for row in x]
    train = Sequences.from_lists([list(e + 1) for e in events],
                                 [[DISLIKE if disliked[u, i] else LIKE for i in e] for u, e in enumerate(events)])
    dataset = Dataset(BLOCKS.dataset.items.head(4), train, np.arange(len(x)), {"n_items": 4})
    b = EASE(l2=2.0).fit(dataset, train).weights[1:, 1:].astype(float)
    residual = (x.T @ x + 2.0 * np.eye(4)) @ b - x.T @ (x - disliked)
    np.testing.assert_allclose(residual - np.diag(np.diag(residual)), 0.0, atol=1e-5)
    assert not np.diag(b).any()
    binary = EASE(l2=2.0, liked_targets=False).fit(dataset, train).weights
    assert not np.allclose(binary, EASE(l2=2.0).fit(dataset, train).weights)


def test_l2_must_be_positive():
    with pytest.raises(ValueError, match="l2"):
        EASE(l2=0.0)


def test_one_history_scores_the_same_bits_alone_as_in_a_batch():
    """A lone history takes the dense path (its titles' rows summed), a batch the sparse product: the same sums in
    the same order, so the same bits; repeats count once and unknown ids are left out on both."""
    rng = np.random.default_rng(3)
    model = EASE()
    model.n_items, model.weights = 60, rng.standard_normal((61, 61)).astype(np.float32)
    histories = [rng.integers(-2, 65, size=n).tolist() for n in (0, 1, 7, 40, 90)]
    batch = model.score(Sequences.from_lists(histories)).numpy()
    for row, history in enumerate(histories):
        alone = model.score(Sequences.from_lists([history])).numpy()
        assert alone.dtype == np.float32 and alone.shape == (1, 61)
        np.testing.assert_array_equal(alone[0], batch[row])
