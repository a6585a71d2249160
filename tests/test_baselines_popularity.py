import numpy as np
import torch
from model_contract import BLOCKS, N_ITEMS, top_unseen

from nostrade.baselines.popularity import Popularity
from nostrade.dataset import Dataset
from nostrade.sequences import Sequences

# Popularity is not personalised, so it does not inherit ModelContract; it is the non-personalised reference.


def fit(train: Sequences, n_items: int = 5) -> Popularity:
    dataset = Dataset(BLOCKS.dataset.items.head(n_items), train, np.arange(train.n_users), BLOCKS.dataset.meta)
    return Popularity().fit(dataset, train)


def test_counts_each_item_once_per_user():
    # user 0 has item 1 three times; users 1 and 2 have item 2 once each
    model = fit(Sequences.from_lists([[1, 1, 1, 3], [2, 3], [2]]))
    np.testing.assert_array_equal(model.users_per_item.numpy(), [0, 1, 2, 2, 0, 0])


def test_every_history_gets_the_same_ranking_and_unknown_ids_are_ignored():
    model = fit(Sequences.from_lists([[1, 2], [2, 7, 0]]))
    scores = model.score(Sequences.from_lists([[], [1], [3, 4, 5]]))
    assert scores.shape == (3, 6)
    assert torch.equal(scores[0], scores[1]) and torch.equal(scores[1], scores[2])
    assert scores[0, 2] == 2 and scores[0, 7 - 5] == 2  # id 7 is not an item: not counted anywhere


def test_the_block_contract_is_not_vacuous():
    """A non-personalised model cannot pass the shared check: it must fail for most users."""
    model = Popularity().fit(BLOCKS.dataset, BLOCKS.train)
    scores = model.score(BLOCKS.train)
    assert scores.shape == (BLOCKS.train.n_users, N_ITEMS + 1)
    assert (top_unseen(scores, BLOCKS.train) == BLOCKS.withheld).mean() < 0.5
