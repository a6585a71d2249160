import numpy as np
import pytest
import torch
from model_contract import BLOCKS, ModelContract, one_torch_thread  # noqa: F401 (autouse)

from nostrade.baselines.interactions import interaction_matrix
from nostrade.baselines.lightgcn import LightGCN, normalized_adjacency
from nostrade.sequences import Sequences


class TestLightGCN(ModelContract):
    def make_model(self, seed):
        return LightGCN(dim=16, layers=2, epochs=60, batch_size=256, lr=5e-2, seed=seed, device="cpu")


def test_adjacency_is_symmetric_normalised_and_leaves_isolated_nodes_at_zero():
    user_items = interaction_matrix(Sequences.from_lists([[1, 2], [2]]), n_items=3)  # item 3 (and 0) unused
    adjacency = normalized_adjacency(user_items).to_dense().numpy()
    assert adjacency.shape == (2 + 4, 2 + 4)
    np.testing.assert_allclose(adjacency, adjacency.T)
    # user 0 (degree 2) - item 2 (degree 2): 1 / sqrt(2 * 2)
    assert adjacency[0, 2 + 2] == pytest.approx(0.5)
    assert adjacency[1, 2 + 2] == pytest.approx(1 / np.sqrt(1 * 2))
    assert not adjacency[2 + 3].any() and not adjacency[2 + 0].any()


def test_score_is_dot_product_with_the_mean_of_history_embeddings():
    model = LightGCN(dim=8, epochs=2, seed=0, device="cpu").fit(BLOCKS.dataset, BLOCKS.train)
    items = model.item_embeddings
    scores = model.score(Sequences.from_lists([[3, 5, 5], [5, 3]]))  # a repeat counts once
    torch.testing.assert_close(scores[0], items @ items[[3, 5]].mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores[0], scores[1])
