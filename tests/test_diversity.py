import numpy as np
import pytest
import torch

from nostrade.diversity import mmr, slate_stats
from nostrade.sequences import Sequences
from nostrade.split import EvalCases

# titles 0-2 alike (one genre), 3 and 4 of two other genres
VECTORS = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
SCORES = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]], np.float32)


def order(scores):
    return list(np.argsort(-scores[0], kind="stable"))


def test_lambda_one_keeps_the_ranking():
    assert order(mmr(SCORES, VECTORS, lam=1.0)) == [0, 1, 2, 3, 4]


def test_a_low_lambda_brings_other_genres_up():
    assert order(mmr(SCORES, VECTORS, lam=0.3))[:3] == [0, 3, 4]


def test_titles_below_depth_and_excluded_titles_keep_their_place():
    scores = np.array([[0.9, 0.8, -np.inf, 0.6, 0.5]], np.float32)
    out = mmr(scores, VECTORS, lam=0.3, depth=3)
    assert order(out)[:3] == [0, 3, 1] and out[0, 4] == 0.5 and out[0, 2] == -np.inf


def test_lambda_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="lambda"):
        mmr(SCORES, VECTORS, lam=-0.1)


def test_slate_stats_count_coverage_and_pairwise_diversity():
    history = Sequences.from_lists([[1], [2]])
    cases = EvalCases(np.arange(2), history, np.array([3, 3]), np.array([2, 2]))
    vectors = np.vstack([np.zeros((1, 3), np.float32), VECTORS])  # iid 1..5

    def scorer(h):  # both lists: the best two unseen of iid 1, 2, 3 (all one genre)
        return torch.tensor([[0, 5, 4, 3, 0, 0]] * h.n_users, dtype=torch.float32)

    stats = slate_stats(scorer, cases, n_items=5, unit_vectors=vectors, k=2)
    assert stats["coverage@2"] == pytest.approx(3 / 5)  # {2, 3} and {1, 3}
    assert stats["ild@2"] == pytest.approx(0.0)
