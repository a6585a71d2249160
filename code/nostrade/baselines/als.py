"""ALS matrix factorisation for implicit feedback (Hu, Koren & Volinsky 2008) with the `implicit` library.

Confidence weighting: ``alpha`` scales every observed entry (implicit's ``alpha``); ``weighting`` first reweighs
the binary user x item matrix as implicit's lastfm example does (BM25 or TF-IDF over the items x users matrix,
from implicit.nearest_neighbours). Every history is scored by folding it in (``recalculate_user``: one
least-squares solve against the fixed item factors), so users seen in training and brand-new ones are scored the
same way, and a test history that includes the validation item is used whole.

BLAS runs single-threaded inside implicit's calls, as implicit asks (its own threads do the work; a BLAS
threadpool on top makes it several times slower and the last digits irreproducible).
"""
from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp
import torch
from implicit.als import AlternatingLeastSquares
from threadpoolctl import ThreadpoolController

from nostrade.baselines.interactions import interaction_matrix
from nostrade.dataset import Dataset
from nostrade.sequences import Sequences

WEIGHTINGS = ("none", "bm25", "tfidf")


@functools.cache
def blas_controller() -> ThreadpoolController:
    """threadpoolctl's view of the loaded libraries, found once: finding them reads /proc (~2 ms, more than a
    served fold-in takes)."""
    return ThreadpoolController()


def single_threaded_blas():
    return blas_controller().limit(limits=1, user_api="blas")


class ALS:
    def __init__(self, factors: int = 64, regularization: float = 0.05, iterations: int = 20, alpha: float = 1.0,
                 weighting: str = "bm25", bm25_k1: float = 100.0, bm25_b: float = 0.8, seed: int = 0,
                 num_threads: int = 0):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting: {weighting!r} is not one of {WEIGHTINGS}")
        self.weighting, self.bm25_k1, self.bm25_b = weighting, bm25_k1, bm25_b
        with single_threaded_blas():
            self.model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                                 iterations=iterations, random_state=seed, num_threads=num_threads,
                                                 use_gpu=False)

    def fit(self, dataset: Dataset, train: Sequences) -> "ALS":
        self.n_items = dataset.n_items
        user_items = interaction_matrix(train, self.n_items)
        if self.weighting == "bm25":
            # BM25's per-item length normalisation, kept so that folded-in users are weighted with the training
            # statistics (bm25_weight would recompute them from whatever matrix it is given).
            users_per_item = np.asarray(user_items.sum(axis=0)).ravel()
            self.item_length_norm = (1 - self.bm25_b) + self.bm25_b * users_per_item / users_per_item.mean()
        with single_threaded_blas():
            self.model.fit(self.weigh(user_items), show_progress=False)
        return self

    def weigh(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        """Apply the chosen weighting to rows of a binary user x item matrix, with the training item statistics.

        Equal to implicit's bm25_weight / tfidf_weight of ``user_items.T`` (then transposed back) when
        ``user_items`` is the training matrix; for other users only their own row enters.
        """
        if self.weighting == "none":
            return user_items
        counts = user_items.data
        user = np.repeat(np.arange(user_items.shape[0]), np.diff(user_items.indptr))
        # idf of a user (a "term" when items are the documents): log(n_items + 1) - log1p(items the user has)
        user_idf = np.log(user_items.shape[1]) - np.log1p(np.diff(user_items.indptr))
        if self.weighting == "tfidf":
            weighted = np.sqrt(counts) * user_idf[user]
        else:
            k1, norm = self.bm25_k1, self.item_length_norm[user_items.indices]
            weighted = counts * (k1 + 1) / (k1 * norm + counts) * user_idf[user]
        return sp.csr_matrix((weighted.astype(np.float32), user_items.indices, user_items.indptr),
                             shape=user_items.shape)

    def user_factors(self, history: Sequences) -> np.ndarray:
        """Fold-in: each history's user factors, solved against the fixed item factors (zero for an empty one)."""
        user_items = self.weigh(interaction_matrix(history, self.n_items))
        with single_threaded_blas():
            return self.model.recalculate_user(np.arange(history.n_users), user_items)

    def score(self, history: Sequences) -> torch.Tensor:
        return torch.from_numpy(self.user_factors(history) @ self.model.item_factors.T)

    def config(self) -> dict:
        m = self.model
        return {"factors": m.factors, "regularization": m.regularization, "iterations": m.iterations,
                "alpha": m.alpha, "weighting": self.weighting, "bm25_k1": self.bm25_k1, "bm25_b": self.bm25_b,
                "seed": m.random_state, "num_threads": m.num_threads, "n_items": self.n_items}

    def state_dict(self) -> dict:
        state = {"item_factors": torch.from_numpy(self.model.item_factors)}
        if self.weighting == "bm25":
            state["item_length_norm"] = torch.from_numpy(self.item_length_norm)
        return state

    @classmethod
    def from_state(cls, config: dict, state: dict) -> "ALS":
        model = cls(**{k: v for k, v in config.items() if k != "n_items"})
        model.n_items = config["n_items"]
        model.model.item_factors = state["item_factors"].numpy()
        if model.weighting == "bm25":
            model.item_length_norm = state["item_length_norm"].numpy()
        return model
