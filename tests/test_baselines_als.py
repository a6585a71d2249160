import numpy as np
import pytest
import scipy.sparse as sp
import torch
from implicit.nearest_neighbours import bm25_weight, tfidf_weight
from model_contract import BLOCKS, N_ITEMS, ModelContract, top_unseen

from nostrade.baselines.als import ALS
from nostrade.baselines.interactions import interaction_matrix
from nostrade.sequences import Sequences


class TestALS(ModelContract):
    def make_model(self, seed):
        return ALS(factors=8, regularization=0.01, iterations=15, weighting="none", seed=seed)


class TestALSBM25(ModelContract):
    def make_model(self, seed):
        return ALS(factors=8, regularization=0.01, iterations=15, weighting="bm25", seed=seed)


@pytest.mark.parametrize("weighting, library", [("bm25", lambda x: bm25_weight(x, K1=100, B=0.8)),
                                                ("tfidf", tfidf_weight)])
def test_weighting_of_the_training_matrix_is_implicits(weighting, library):
    model = ALS(factors=4, iterations=2, weighting=weighting).fit(BLOCKS.dataset, BLOCKS.train)
    user_items = interaction_matrix(BLOCKS.train, N_ITEMS)
    expected = sp.csr_matrix(library(user_items.T.tocsr()).T)
    np.testing.assert_allclose(model.weigh(user_items).toarray(), expected.toarray(), rtol=1e-5)


def test_fold_in_of_a_brand_new_user_uses_only_their_history():
    model = ALS(factors=8, regularization=0.01, iterations=15, seed=0).fit(BLOCKS.dataset, BLOCKS.train)
    new = Sequences.from_lists([[13, 14, 15]])  # three items of group 2's block
    scores = model.score(new)
    top5 = torch.topk(torch.where(torch.arange(N_ITEMS + 1) > 0, scores[0], -torch.inf), 6).indices
    assert set(top5.tolist()) == set(range(13, 19))  # the whole block, seen items included, before any other
    assert top_unseen(scores, new)[0] in (16, 17, 18)
    # the training users' factors are not touched by scoring someone new
    before = model.model.user_factors.copy()
    model.score(new)
    np.testing.assert_array_equal(model.model.user_factors, before)


def test_unknown_weighting_is_a_clear_error():
    with pytest.raises(ValueError, match="weighting"):
        ALS(weighting="bm52")
