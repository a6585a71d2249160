"""Content-only: items as genre/type vectors (scikit-learn), users as the feedback-weighted mean of their items.

Each item is the bag of its genres plus (``use_type``) its type ("type=TV"), as an L2-normalised multi-hot vector
(``features="multihot"``) or TF-IDF vector (``features="tfidf"``, rare genres count more). A history's profile is
the mean of its items' vectors weighted by feedback (FEEDBACK_PROFILE_WEIGHTS: Dislike -1, Like 1, Love 2), so a
Dislike pushes the profile away from that item's genres; items score the cosine between their vector and the
profile (an empty or featureless profile scores 0 everywhere). Training interactions are not used: this is the
cold-start path. ``profile_cosines`` over ``item_vectors(items, "multihot", use_type=False)`` is the genre part of
the served score (nostrade.scoring).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import TfidfVectorizer

from nostrade.baselines.interactions import csr_from_state, csr_state, known_events
from nostrade.dataset import Dataset
from nostrade.sequences import DISLIKE, LIKE, LOVE, Sequences, sum_by_owner

FEATURES = ("tfidf", "multihot")
FEEDBACK_PROFILE_WEIGHTS = {DISLIKE: -1.0, LIKE: 1.0, LOVE: 2.0}


def item_tokens(items: pd.DataFrame, use_type: bool = True) -> list[list[str]]:
    """Genres and ``type=<type>`` of each item, in row order (missing genres or type give no token)."""
    genres = [list(g) if g is not None and not (isinstance(g, float) and np.isnan(g)) else [] for g in items["genres"]]
    types = items["type"] if use_type and "type" in items else [None] * len(items)
    return [g + ([f"type={t}"] if isinstance(t, str) and t else []) for g, t in zip(genres, types)]


def item_vectors(items: pd.DataFrame, features: str = "multihot", use_type: bool = False) -> tuple[sp.csr_matrix,
                                                                                                    np.ndarray]:
    """(rows of ``items`` x tokens) L2-normalised float32 CSR vectors, and the token names."""
    if features not in FEATURES:
        raise ValueError(f"features: {features!r} is not one of {FEATURES}")
    tfidf = features == "tfidf"
    vectorizer = TfidfVectorizer(analyzer=list, lowercase=False, use_idf=tfidf, binary=not tfidf, norm="l2")
    tokens = item_tokens(items, use_type)
    if not any(tokens):  # no item has a token: zero-width vectors, every cosine 0
        return sp.csr_matrix((len(tokens), 0), dtype=np.float32), np.array([], dtype=object)
    vectors = vectorizer.fit_transform(tokens)
    return vectors.astype(np.float32).tocsr(), vectorizer.get_feature_names_out()


def weight_table(weights: dict[int, float]) -> np.ndarray:
    """Feedback code -> profile weight, as an array indexed by code (0 where a code has none)."""
    table = np.zeros(max(weights) + 1, np.float32)
    table[list(weights)] = list(weights.values())
    return table


_PROFILE_WEIGHTS = weight_table(FEEDBACK_PROFILE_WEIGHTS)


def profile_cosines(vectors, owner: np.ndarray, row: np.ndarray, feedback: np.ndarray, n_owners: int,
                    weights: dict[int, float] = FEEDBACK_PROFILE_WEIGHTS, transposed: np.ndarray | None = None
                    ) -> np.ndarray:
    """(n_owners, n_rows) float32 cosine between every row of ``vectors`` (unit rows, dense or sparse) and each
    owner's profile: the L2-normalised sum of its events' vectors (event = ``row[e]`` of owner ``owner[e]``,
    ascending), each weighted by its feedback. ``transposed``: dense ``vectors.T``, C-contiguous, where the caller
    keeps one (a product with the transposed view is ~1.5x slower)."""
    weight_of = _PROFILE_WEIGHTS if weights is FEEDBACK_PROFILE_WEIGHTS else weight_table(weights)
    per_event = np.take(weight_of, feedback, mode="clip")  # codes outside the table count as its nearest end
    if sp.issparse(vectors):
        events = sp.csr_matrix((per_event, (owner, row)), shape=(n_owners, vectors.shape[0]), dtype=np.float32)
        profile = (events @ vectors).toarray()
    else:  # one person at a time when serving: a dense sum is faster than building a sparse matrix
        profile = sum_by_owner(vectors[row] * per_event[:, None], owner, n_owners)
    profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
    return np.asarray(profile @ (vectors.T if transposed is None else transposed), dtype=np.float32)


DENSE_COLUMNS = 512  # Content scores from a dense copy of its vectors up to this many feature columns


class Content:
    def __init__(self, features: str = "tfidf", use_type: bool = True):
        if features not in FEATURES:
            raise ValueError(f"features: {features!r} is not one of {FEATURES}")
        self.features, self.use_type = features, use_type

    def fit(self, dataset: Dataset, train: Sequences) -> "Content":
        vectors, self.vocabulary = item_vectors(dataset.items, self.features, self.use_type)
        self.item_vectors = sp.vstack([sp.csr_matrix((1, vectors.shape[1]), dtype=np.float32), vectors]).tocsr()
        return self  # row 0 is padding: a zero vector

    def score(self, history: Sequences) -> torch.Tensor:
        keep = known_events(history, self.item_vectors.shape[0] - 1)
        vectors, transposed = self.scoring_vectors()
        return torch.from_numpy(profile_cosines(vectors, history.row_of_event()[keep], history.iid[keep],
                                                history.feedback[keep], history.n_users, transposed=transposed))

    def scoring_vectors(self) -> tuple:
        """The item vectors as profile_cosines reads them fastest, and their C-contiguous transpose: dense where they
        have few columns (genres and types: a dense sum beats building a sparse matrix per request, the ranker's
        cost), else the CSR (and None)."""
        if self.item_vectors.shape[1] > DENSE_COLUMNS:
            return self.item_vectors, None
        if getattr(self, "_dense", None) is None:
            dense = self.item_vectors.toarray()
            self._dense = dense, np.ascontiguousarray(dense.T)
        return self._dense

    def config(self) -> dict:
        return {"features": self.features, "use_type": self.use_type, "vocabulary": [str(t) for t in self.vocabulary],
                "n_items": self.item_vectors.shape[0] - 1}

    def state_dict(self) -> dict:
        return csr_state(self.item_vectors)

    @classmethod
    def from_state(cls, config: dict, state: dict) -> "Content":
        model = cls(config["features"], config["use_type"])
        model.vocabulary = np.array(config["vocabulary"], dtype=object)
        model.item_vectors = csr_from_state(state, (config["n_items"] + 1, len(model.vocabulary)))
        return model
