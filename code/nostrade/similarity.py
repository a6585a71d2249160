"""The item space of an order-free model: titles near titles that the same people rate alike, and that share genres.

It serves ``similar`` titles, the explanations and the dislike penalty wherever EASE is the served model.

Co-watching alone (EASE's weights, item-kNN) mostly finds titles of the same years and the same popularity: on
the anime sample an item's 10 nearest neighbours sit about 0.3 of a random pair's distance apart in anime-id
(release) order. Rating agreement removes that: feedback as -1 / 0 / +1 (Dislike / Like / Love) minus each
person's mean, so two titles are close when the same people rate them above or below their own average, whether or
not everybody watched them. Alone it is noisy on genres, so the space is its unit rank-64 vectors beside the unit
genre vectors, weighted 0.7 / 0.3 in cosine (`python benchmarks/order_invariance.py` measures what is served:
id-distance ratio and genre Jaccard of the neighbours, beside item-kNN's).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

from nostrade.baselines.content import item_vectors as genre_vectors
from nostrade.baselines.interactions import known_events
from nostrade.dataset import Dataset
from nostrade.sequences import LIKE, Sequences

AGREEMENT_DIM = 64
GENRE_WEIGHT = 0.3  # share of the cosine that comes from genres
COSINE_MATRIX_MAX_BYTES = 64 << 20  # Cosines keeps the whole title x title matrix up to this size


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def agreement_vectors(train: Sequences, n_items: int, dim: int = AGREEMENT_DIM) -> np.ndarray:
    """(n_items + 1, dim) unit vectors: the best rank-``dim`` approximation of each item's column of user-centred
    feedback (Dislike -1, Like 0, Love +1, minus the user's mean; a repeated title's latest feedback). Row 0 zero."""
    keep = known_events(train, n_items)
    events = pd.DataFrame({"user": train.row_of_event()[keep], "item": train.iid[keep],
                           "value": train.feedback[keep].astype(np.float64) - LIKE})
    events = events.drop_duplicates(["user", "item"], keep="last")
    users, items, value = (events[c].to_numpy() for c in ("user", "item", "value"))
    counts = np.bincount(users, minlength=train.n_users)
    mean = np.bincount(users, weights=value, minlength=train.n_users) / np.maximum(counts, 1)
    centred = sp.csr_matrix((value - mean[users], (items, users)), shape=(n_items + 1, train.n_users))
    dim = min(dim, min(centred.shape) - 1)
    left, sigma, _ = randomized_svd(centred, dim, random_state=0)
    vectors = unit_rows(left * sigma)
    vectors[0] = 0.0
    return vectors


def genre_unit_vectors(dataset: Dataset) -> np.ndarray:
    """(n_items + 1, genres) unit multi-hot genre vectors of the vocabulary (row 0 zero)."""
    multihot, _ = genre_vectors(dataset.items, "multihot", use_type=False)
    return np.vstack([np.zeros((1, multihot.shape[1]), np.float32), multihot.toarray()])


def taste_vectors(dataset: Dataset, train: Sequences, genre_weight: float = GENRE_WEIGHT) -> np.ndarray:
    """(n_items + 1, AGREEMENT_DIM + genres) unit vectors whose cosine is (1 - w)·rating agreement + w·genre
    cosine (w = ``genre_weight``). Row 0 zero."""
    genres = genre_unit_vectors(dataset)
    agreement = agreement_vectors(train, dataset.n_items)
    return unit_rows(np.hstack([np.sqrt(1 - genre_weight) * agreement, np.sqrt(genre_weight) * genres]))


class Cosines:
    """Cosines of some rows of a unit-row space (``unit``, (n, d)) to its rows ``first_column`` onwards:
    ``cosines(rows)`` -> (len(rows), n - first_column) float32. Gathered from the whole matrix, computed once, where
    it takes at most ``max_bytes`` (the sample's 2,000 titles: 16 MB; a request's few rows then cost a gather instead
    of a product with every title, ~0.07 ms on one core); else a product per call. ``unit_t``: the columns' rows
    transposed, C-contiguous (a product with a transposed view is several times slower)."""

    def __init__(self, unit: np.ndarray, first_column: int = 0, max_bytes: int = COSINE_MATRIX_MAX_BYTES):
        self.unit = np.asarray(unit, dtype=np.float32)
        self.unit_t = np.ascontiguousarray(self.unit[first_column:].T)
        fits = len(self.unit) * self.unit_t.shape[1] * 4 <= max_bytes
        self.matrix = self.unit @ self.unit_t if fits else None

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return self.matrix[rows] if self.matrix is not None else self.unit[rows] @ self.unit_t


def max_per_segment(rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(len(counts), n): the elementwise max of each segment of ``rows`` (consecutive runs of ``counts[i]`` >= 1
    rows, e.g. each person's dislikes' cosines), by a running max over the j-th row of every segment (its last
    again where it has fewer): np.maximum.reduceat along axis 0 is ~20x slower on a request's few rows."""
    if len(counts) == 1:  # one request's dislikes
        return rows.max(axis=0, keepdims=True)
    first, last = np.cumsum(counts) - counts, counts - 1
    out = rows[first]
    for j in range(1, int(counts.max(initial=1))):
        np.maximum(out, rows[first + np.minimum(j, last)], out=out)
    return out
