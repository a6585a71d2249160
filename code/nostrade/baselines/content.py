"""Content-only: items as genre/type vectors (scikit-learn), users as the feedback-weighted mean of their items.

Each item is the bag of its genres plus (``use_type``) its type ("type=TV"), as an L2-normalised multi-hot vector
(``features="multihot"``) or TF-IDF vector (``features="tfidf"``, rare genres count more). A history's profile is
the mean of its items' vectors weighted by feedback (Dislike -1, Like 1, Love 2 by default), so a Dislike pushes
the profile away from that item's genres; items score the cosine between their vector and the profile (an empty
or featureless profile scores 0 everywhere). Training interactions are not used: this is the cold-start path.
``Content("multihot", use_type=False)`` is the genre cosine that predict.py blends with SASRec.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from nostrade.baselines.interactions import interaction_matrix
from nostrade.dataset import Dataset
from nostrade.sequences import DISLIKE, LIKE, LOVE, Sequences

FEATURES = ("tfidf", "multihot")


def item_tokens(items: pd.DataFrame, use_type: bool = True) -> list[list[str]]:
    """Genres and ``type=<type>`` of each item, in iid order (missing genres or type give no token)."""
    genres = [list(g) if g is not None and not (isinstance(g, float) and np.isnan(g)) else [] for g in items["genres"]]
    types = items["type"] if use_type and "type" in items else [None] * len(items)
    return [g + ([f"type={t}"] if isinstance(t, str) and t else []) for g, t in zip(genres, types)]


class Content:
    def __init__(self, features: str = "tfidf", use_type: bool = True,
                 feedback_weights: dict[int, float] | None = None):
        if features not in FEATURES:
            raise ValueError(f"features: {features!r} is not one of {FEATURES}")
        self.features, self.use_type = features, use_type
        self.feedback_weights = feedback_weights or {DISLIKE: -1.0, LIKE: 1.0, LOVE: 2.0}

    def fit(self, dataset: Dataset, train: Sequences) -> "Content":
        tfidf = self.features == "tfidf"
        vectorizer = TfidfVectorizer(analyzer=list, lowercase=False, use_idf=tfidf, binary=not tfidf, norm="l2")
        # row 0 is padding: no tokens, a zero vector
        vectors = vectorizer.fit_transform([[]] + item_tokens(dataset.items, self.use_type))
        self.vocabulary = vectorizer.get_feature_names_out()
        self.item_vectors = vectors.astype(np.float32).tocsr()
        return self

    def profiles(self, history: Sequences) -> np.ndarray:
        """(batch, n_features) L2-normalised feedback-weighted sums (same direction as the means) of the items."""
        weight_of = np.zeros(max(self.feedback_weights) + 1, np.float32)
        weight_of[list(self.feedback_weights)] = list(self.feedback_weights.values())
        feedback = np.clip(history.feedback, 0, len(weight_of) - 1)
        weights = interaction_matrix(history, self.item_vectors.shape[0] - 1, values=weight_of[feedback])
        return normalize(weights @ self.item_vectors).toarray()

    def score(self, history: Sequences) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.item_vectors @ self.profiles(history).T).T.astype(np.float32))
