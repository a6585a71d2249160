import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from model_contract import BLOCKS, BLOCK, N_ITEMS, ModelContract

from nostrade.baselines.content import Content, item_tokens, profile_cosines
from nostrade.sequences import DISLIKE, LIKE, LOVE, Sequences


class TestContentTfidf(ModelContract):
    def make_model(self, seed):
        return Content(features="tfidf")


class TestContentMultihot(ModelContract):
    def make_model(self, seed):
        return Content(features="multihot")


@pytest.fixture(scope="module")
def model():
    return Content().fit(BLOCKS.dataset, BLOCKS.train)


def block_of(iid):
    return (np.asarray(iid) - 1) // BLOCK


def test_a_history_of_only_dislikes_ranks_the_disliked_genre_last(model):
    scores = model.score(Sequences.from_lists([[1, 2]], [[DISLIKE, DISLIKE]]))[0, 1:]
    assert torch.isfinite(scores).all()
    worst = torch.argsort(scores)[:BLOCK].numpy() + 1
    assert set(block_of(worst)) == {0}  # block 0 (the disliked genre) is at the bottom
    assert scores[block_of(np.arange(1, N_ITEMS + 1)) != 0].min() > scores[:BLOCK].max()


def test_love_outweighs_like_and_dislike_cancels_like(model):
    # one Love of block 1, one Like of block 2: block 1 ranks above block 2
    s = model.score(Sequences.from_lists([[7, 13]], [[LOVE, LIKE]]))[0]
    assert s[8] > s[14]
    # a Like and a Dislike of the same genre cancel out: a zero profile scores 0 everywhere
    s = model.score(Sequences.from_lists([[7, 8]], [[LIKE, DISLIKE]]))[0]
    assert torch.equal(s, torch.zeros(N_ITEMS + 1))


def test_items_without_genres_or_type_score_zero():
    items = BLOCKS.dataset.items.copy()
    items["genres"] = [[] if i == 0 else g for i, g in enumerate(items["genres"])]
    items["type"] = [None if i == 0 else t for i, t in enumerate(items["type"])]
    dataset = BLOCKS.dataset.__class__(items, BLOCKS.dataset.sequences, BLOCKS.dataset.user_ids, BLOCKS.dataset.meta)
    model = Content().fit(dataset, BLOCKS.train)
    scores = model.score(Sequences.from_lists([[2, 3]]))
    assert scores[0, 1] == 0 and scores[0, 4] > 0


def test_tokens_are_genres_and_type():
    items = pd.DataFrame({"genres": [["Action", "Drama"], [], None], "type": ["TV", None, "Movie"]})
    assert item_tokens(items) == [["Action", "Drama", "type=TV"], [], ["type=Movie"]]
    assert item_tokens(items, use_type=False) == [["Action", "Drama"], [], []]


def test_tfidf_weighs_rare_genres_more_than_multihot():
    items = pd.DataFrame({"iid": [1, 2, 3], "genres": [["Common", "Rare"], ["Common"], ["Common"]],
                          "type": [None, None, None]})
    dataset = BLOCKS.dataset.__class__(items, BLOCKS.train, BLOCKS.dataset.user_ids, BLOCKS.dataset.meta)
    tfidf = Content("tfidf").fit(dataset, BLOCKS.train).item_vectors.toarray()[1]
    multihot = Content("multihot").fit(dataset, BLOCKS.train).item_vectors.toarray()[1]
    np.testing.assert_allclose(multihot, [np.sqrt(0.5)] * 2)
    assert tfidf[1] > tfidf[0]  # vocabulary is sorted: Common, Rare


def test_unknown_features_is_a_clear_error():
    with pytest.raises(ValueError, match="features"):
        Content(features="word2vec")


def test_profile_cosines_agree_dense_sparse_and_with_the_transpose_kept():
    rng = np.random.default_rng(0)
    vectors = (rng.random((30, 7)) < 0.3).astype(np.float32)
    vectors[np.arange(30), np.arange(30) % 7] = 1.0  # every title has a genre
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    owner, row, feedback = np.array([0, 0, 0, 2, 2]), np.array([1, 5, 9, 3, 4]), np.array([LIKE, LOVE, DISLIKE, LIKE, LIKE])
    dense = profile_cosines(vectors, owner, row, feedback, 3)
    np.testing.assert_allclose(profile_cosines(sp.csr_matrix(vectors), owner, row, feedback, 3), dense, atol=1e-6)
    np.testing.assert_allclose(profile_cosines(vectors, owner, row, feedback, 3,
                                               transposed=np.ascontiguousarray(vectors.T)), dense, atol=1e-6)
    assert not dense[1].any() and dense[2, 3] > 0
