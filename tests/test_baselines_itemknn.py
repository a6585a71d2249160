import numpy as np
import pytest
from model_contract import BLOCKS, N_ITEMS, ModelContract

from nostrade.baselines.itemknn import ItemKNN
from nostrade.sequences import Sequences


class TestItemKNN(ModelContract):
    def make_model(self, seed):
        return ItemKNN(neighbours=10)


class TestItemKNNBM25(ModelContract):
    def make_model(self, seed):
        return ItemKNN(neighbours=10, weighting="bm25")


def test_score_is_the_sum_of_the_history_items_similarity_rows():
    model = ItemKNN(neighbours=N_ITEMS).fit(BLOCKS.dataset, BLOCKS.train)
    similarity = model.similarity.toarray()
    scores = model.score(Sequences.from_lists([[1, 2, 8], [8]]))
    np.testing.assert_allclose(scores[0].numpy(), similarity[[1, 2, 8]].sum(axis=0), rtol=1e-5)
    np.testing.assert_allclose(scores[1].numpy(), similarity[8], rtol=1e-5)
    # cosine of two items of the same block, computed by hand from their user columns
    users = [set(np.flatnonzero([i in s for s in np.split(BLOCKS.train.iid, BLOCKS.train.offsets[1:-1])]))
             for i in (1, 2)]
    assert similarity[1, 2] == pytest.approx(len(users[0] & users[1]) / np.sqrt(len(users[0]) * len(users[1])))


def test_neighbours_are_pruned_to_k():
    model = ItemKNN(neighbours=3).fit(BLOCKS.dataset, BLOCKS.train)
    assert (np.diff(model.similarity.indptr) <= 3).all()


def test_unknown_weighting_is_a_clear_error():
    with pytest.raises(ValueError, match="weighting"):
        ItemKNN(weighting="jaccard")

