"""EASE: an item-item linear autoencoder with a closed form (Steck 2019, "Embarrassingly Shallow Autoencoders").

With X the binary user x item matrix of the training part, G = XᵀX + λI and P = G⁻¹, the weights are
B = -P / diag(P) (column-wise) with diag(B) = 0: the ridge regression of each item's column on every other item's,
forbidden to use the item itself. A history scores item j as the sum of its items' rows of B, so any history, seen
in training or not, is scored the same way.

Feedback (``liked_targets``, the default): the input stays every watched title, but the regression targets are
the liked and loved ones only, min ||Y - XB||² + λ||B||² with diag(B) = 0, whose solution is B = PXᵀY - P·diag(μ),
μ_j = (PXᵀY)_jj / P_jj (with Y = X it is Steck's B above). Binary EASE learns "watched together", and disliked
titles were watched: on the anime sample (order-free split) it ranks a held-out Dislike at NDCG@10 0.595 and its
Δ liked − disliked is −0.39; with liked targets next-item NDCG@10 goes 0.2047 -> 0.2067, the Dislike falls to
0.079 and Δ = +0.124 (benchmarks/ablation.py rows ease and ease-binary). Feeding Dislikes into X with weight 0,
0.5 or -1 instead lowered validation NDCG@10 on both data sets.

The default λ = 150 is the best single value for validation NDCG@10 of binary EASE on both ML-100K (best 100,
0.0879; 150: 0.0873) and the anime sample, file-order split (best 400, 0.0636; 150: 0.0633).

The solve is dense: (n_items + 1)² float64 for G and P (12,000 items: 1.2 GB each), an inverse and (liked targets)
one more product of that size: seconds for the sample, minutes for 12,000 titles.

EASE is also a served model (predict.Recommender, nostrade.checkpoint): it reads every event of a history, in no
order. Its item space (similar titles, explanations, the dislike penalty) is not B: B's rows and columns give
co-watching neighbours of the same years and popularity; nostrade.similarity's taste vectors (rating agreement
beside genres) are fitted on the same training part and kept in the checkpoint.
"""
from __future__ import annotations

import numpy as np
import torch

from nostrade.baselines.interactions import interaction_matrix, known_events
from nostrade.dataset import Dataset
from nostrade.sequences import DISLIKE, Sequences
from nostrade import similarity  # a module import: similarity reads baselines.content


class EASE:
    kind = "ease"
    window = None  # a served model reads every event of a history (the scores ignore their order)

    def __init__(self, l2: float = 150.0, liked_targets: bool = True):
        if not l2 > 0:
            raise ValueError(f"l2: {l2!r} must be positive (G = XᵀX + l2·I has to be invertible)")
        self.l2, self.liked_targets = l2, liked_targets

    def fit(self, dataset: Dataset, train: Sequences) -> "EASE":
        self.n_items = dataset.n_items
        x = interaction_matrix(train, self.n_items)
        gram = (x.T @ x).toarray().astype(np.float64)
        diagonal = np.diag_indices_from(gram)
        gram[diagonal] += self.l2
        inverse = np.linalg.inv(gram)
        if self.liked_targets:  # min ||Y - XB||² + l2·||B||², diag(B) = 0, Y = the liked part of X
            liked = interaction_matrix(train.select(train.feedback != DISLIKE), self.n_items)
            fitted = inverse @ (x.T @ liked).toarray()
            weights = fitted - inverse * (np.diag(fitted) / np.diag(inverse))
        else:  # Y = X: Steck's B = -P / diag(P), column j divided by -P[j, j]
            weights = inverse / -np.diag(inverse)
        weights[diagonal] = 0.0
        self.weights = weights.astype(np.float32)  # (n_items + 1, n_items + 1); row and column 0 (padding) zero
        self.vectors = similarity.taste_vectors(dataset, train)
        return self

    def score(self, history: Sequences) -> torch.Tensor:
        if history.n_users == 1:  # one request: its titles' rows summed in the same order, without a sparse matrix
            titles = np.unique(history.iid[known_events(history, self.n_items)])
            return torch.from_numpy(self.weights[titles].sum(axis=0, keepdims=True))
        return torch.from_numpy(np.asarray(interaction_matrix(history, self.n_items) @ self.weights))

    def item_vectors(self) -> np.ndarray:
        """(n_items + 1, d) unit taste vectors (nostrade.similarity; row 0 zero)."""
        return self.vectors

    def config(self) -> dict:
        return {"l2": self.l2, "liked_targets": self.liked_targets, "n_items": self.n_items}

    def state_dict(self) -> dict:
        return {"weights": torch.from_numpy(self.weights), "vectors": torch.from_numpy(self.vectors)}

    @classmethod
    def from_state(cls, config: dict, state: dict) -> "EASE":
        model = cls(config["l2"], config.get("liked_targets", False))
        model.n_items, model.weights, model.vectors = config["n_items"], state["weights"].numpy(), state["vectors"].numpy()
        return model
