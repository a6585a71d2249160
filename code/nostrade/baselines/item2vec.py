"""item2vec-style item embeddings from co-occurrence, to initialise SASRec's item embedding table.

item2vec (Barkan & Koenigstein 2016) is skip-gram with negative sampling where a user's items are one context set;
SGNS implicitly factorises the shifted PMI matrix of item co-occurrences (Levy & Goldberg 2014), so this computes
that factorisation directly and deterministically: co-occurrence counts within users' training histories ->
positive PMI (with context-distribution smoothing) -> truncated SVD (scikit-learn), embedding = U·sqrt(S).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD

from nostrade.baselines.interactions import interaction_matrix
from nostrade.sequences import Sequences


def ppmi_matrix(train: Sequences, n_items: int, smoothing: float = 0.75) -> sp.csr_matrix:
    """(n_items + 1)^2 positive PMI of items co-occurring in a user's history (each pair once per user)."""
    user_items = interaction_matrix(train, n_items)
    cooc = (user_items.T @ user_items).tocoo()
    off_diagonal = cooc.row != cooc.col
    rows, cols, counts = cooc.row[off_diagonal], cooc.col[off_diagonal], cooc.data[off_diagonal].astype(np.float64)
    item_total = np.bincount(rows, weights=counts, minlength=n_items + 1)
    context = item_total ** smoothing
    pmi = np.log(counts * context.sum() / (item_total[rows] * context[cols]))
    positive = pmi > 0
    return sp.csr_matrix((pmi[positive], (rows[positive], cols[positive])), shape=(n_items + 1,) * 2)


def item2vec_embeddings(train: Sequences, n_items: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """(n_items + 1, dim) float32 item embeddings; row 0 (padding) is zero, as are items never co-occurring.

    With fewer than ``dim + 1`` items the trailing columns are zero (SVD cannot give more components).
    """
    ppmi = ppmi_matrix(train, n_items)
    n_components = min(dim, n_items - 1)
    svd = TruncatedSVD(n_components=n_components, random_state=seed)
    embeddings = np.zeros((n_items + 1, dim), np.float32)
    embeddings[:, :n_components] = svd.fit_transform(ppmi) / np.sqrt(np.maximum(svd.singular_values_, 1e-12))
    embeddings[0] = 0.0
    return embeddings
