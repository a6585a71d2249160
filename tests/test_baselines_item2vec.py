import numpy as np
from model_contract import BLOCK, BLOCKS, N_ITEMS

from nostrade.baselines.item2vec import item2vec_embeddings, ppmi_matrix
from nostrade.sequences import Sequences


def cosine(embeddings):
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def test_items_of_a_block_are_closer_to_each_other_than_to_other_blocks():
    embeddings = item2vec_embeddings(BLOCKS.train, N_ITEMS, dim=8, seed=0)
    assert embeddings.shape == (N_ITEMS + 1, 8) and embeddings.dtype == np.float32
    assert not embeddings[0].any()
    sim = cosine(embeddings)[1:, 1:]
    block = np.arange(N_ITEMS) // BLOCK
    same = block[:, None] == block[None, :]
    off_diagonal = ~np.eye(N_ITEMS, dtype=bool)
    assert sim[same & off_diagonal].min() > sim[~same].max()


def test_deterministic_for_a_seed_and_padded_when_dim_exceeds_the_items():
    a = item2vec_embeddings(BLOCKS.train, N_ITEMS, dim=64, seed=1)
    b = item2vec_embeddings(BLOCKS.train, N_ITEMS, dim=64, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (N_ITEMS + 1, 64) and not a[:, N_ITEMS - 1:].any()


def test_ppmi_is_positive_and_off_diagonal():
    ppmi = ppmi_matrix(Sequences.from_lists([[1, 2], [1, 2], [2, 3], [3, 4]]), n_items=4).toarray()
    assert (ppmi >= 0).all() and not np.diag(ppmi).any()
    assert ppmi[1, 2] > 0 and ppmi[1, 4] == 0  # 1 and 4 never co-occur
