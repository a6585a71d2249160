import math

import numpy as np
import pytest
import torch

from nostrade.evaluate import evaluate, evaluate_all_targets, history_mask, metrics_from_ranks, target_ranks
from nostrade.sequences import Sequences
from nostrade.split import leave_one_out


def test_ties_count_against_the_target():
    scores = torch.tensor([[9.0, 1.0, 1.0, 1.0, 0.0]])  # column 0 is padding and never ranks
    assert target_ranks(scores, torch.tensor([2]), torch.zeros(1, 5, dtype=torch.bool)).item() == 3


def test_a_constant_scorer_ranks_the_target_last():
    scores = torch.zeros(2, 6)
    ranks = target_ranks(scores, torch.tensor([1, 5]), torch.zeros(2, 6, dtype=torch.bool))
    assert ranks.tolist() == [5, 5]


def test_history_is_excluded_but_the_target_never_is():
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0]])
    exclude = torch.tensor([[False, True, True, True, False]])  # target 3 is also in the history (a repeat)
    assert target_ranks(scores, torch.tensor([3]), exclude).item() == 1


def test_metrics_by_hand():
    m = metrics_from_ranks(np.array([1, 3, 11, 25]))
    assert m["hr@10"] == pytest.approx(0.5)
    assert m["hr@20"] == pytest.approx(0.75)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert m["ndcg@20"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(12)) / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 11 + 1 / 25) / 4)


def test_history_mask():
    h = Sequences.from_lists([[1, 3], [2]])
    assert history_mask(h, 3).tolist() == [[False, True, False, True], [False, False, True, False]]


def test_evaluate_end_to_end_with_a_scorer_that_prefers_high_ids():
    seqs = Sequences.from_lists([[1, 2, 3, 6], [4, 5, 1, 2]], [[2, 2, 2, 1], [3, 3, 2, 3]])
    split = leave_one_out(seqs)
    n_items = 6
    prefer_high = lambda h: torch.arange(n_items + 1, dtype=torch.float).repeat(h.n_users, 1)
    m = evaluate(prefer_high, split.test, n_items)
    # user 0: history {1,2,3}, target 6 ranks 1st; user 1: history {4,5,1}, candidates 6,3,2 -> target 2 ranks 3rd
    assert m["n_cases"] == 2 and m["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    every = evaluate_all_targets(prefer_high, split, n_items, keep_ranks=True)
    # next disliked: user 0's test event, a Dislike of 6 (rank 1); next liked: user 1's, a Like of 2 (rank 3)
    assert every["next_disliked"]["ranks"] == [1] and every["next_liked"]["ranks"] == [3]
    assert every["next_disliked"]["ndcg@10"] == pytest.approx(1.0)
    assert every["delta_ndcg@10"] == pytest.approx(1 / math.log2(4) - 1.0)
    assert "ranks" not in evaluate_all_targets(prefer_high, split, n_items)["next_item"]
