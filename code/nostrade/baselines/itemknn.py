"""Item-kNN: item-item cosine similarity of the items' user columns, each item keeping its K nearest neighbours.

The similarity matrix comes from `implicit` (CosineRecommender, or its BM25/TF-IDF-weighted variants). A history
scores item j as the sum of its items' similarities to j, so any history, seen in training or not, is scored the
same way.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, TFIDFRecommender
from implicit.utils import ParameterWarning

from nostrade.baselines.interactions import csr_from_state, csr_state, interaction_matrix, known_events
from nostrade.dataset import Dataset
from nostrade.sequences import Sequences

RECOMMENDERS = {"cosine": CosineRecommender, "bm25": BM25Recommender, "tfidf": TFIDFRecommender}


class ItemKNN:
    def __init__(self, neighbours: int = 20, weighting: str = "cosine", num_threads: int = 0):
        if weighting not in RECOMMENDERS:
            raise ValueError(f"weighting: {weighting!r} is not one of {tuple(RECOMMENDERS)}")
        self.neighbours, self.weighting = neighbours, weighting
        self.model = RECOMMENDERS[weighting](K=neighbours, num_threads=num_threads)

    def fit(self, dataset: Dataset, train: Sequences) -> "ItemKNN":
        self.n_items = dataset.n_items
        with warnings.catch_warnings():
            # implicit's own weighting helpers hand its kNN a COO matrix and then warn about it
            warnings.simplefilter("ignore", ParameterWarning)
            self.model.fit(interaction_matrix(train, self.n_items), show_progress=False)
        # (n_items + 1, n_items + 1) CSR, row i = item i's K neighbours
        self.similarity = self.model.similarity.astype(np.float32)
        return self

    def score(self, history: Sequences) -> torch.Tensor:
        # S^T @ X^T with X dense: one sparse-dense product, no sparse matrix built per request (the ranker's cost)
        seen = np.zeros((history.n_users, self.n_items + 1), np.float32)
        keep = known_events(history, self.n_items)
        seen[history.row_of_event()[keep], history.iid[keep]] = 1.0
        return torch.from_numpy(np.ascontiguousarray((self.similarity.T @ seen.T).T))

    def config(self) -> dict:
        return {"neighbours": self.neighbours, "weighting": self.weighting, "n_items": self.n_items}

    def state_dict(self) -> dict:
        return csr_state(self.similarity)

    @classmethod
    def from_state(cls, config: dict, state: dict) -> "ItemKNN":
        model = cls(config["neighbours"], config["weighting"])
        model.n_items = config["n_items"]
        model.similarity = csr_from_state(state, (model.n_items + 1,) * 2)
        return model
