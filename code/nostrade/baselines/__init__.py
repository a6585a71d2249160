"""Baselines, all behind one small interface, the one SASRec has too (nostrade.registry holds them all by name).

    model = BASELINES[name](**options)        # hyper-parameters as keyword arguments, with defaults
    model.fit(dataset: Dataset, train: Sequences) -> model
    model.score(history: Sequences) -> torch.Tensor (batch, n_items + 1)

``fit`` learns from the training part of a split (``leave_one_out(...).train``); ``dataset`` gives the item count
and the item table (genres, type). ``score`` is a nostrade.evaluate Scorer: one row of scores over the whole
catalogue per history (column 0 is padding and means nothing). Every model scores any history, not only those of
users seen in training: at test time a history also holds the validation item, and in serving it is a new person's
picks. Each model file says how it folds a history in. Padding and ids outside 1..n_items in a history are ignored;
an empty history gets a constant or popularity-free row, never an error. Models with randomness take ``seed`` and
give identical scores for the same seed on CPU.

``item2vec_embeddings`` is not a scorer: it makes an (n_items + 1, d) matrix to initialise SASRec's item table.
"""
from __future__ import annotations

from nostrade.baselines.als import ALS
from nostrade.baselines.content import Content
from nostrade.baselines.ease import EASE
from nostrade.baselines.gru4rec import GRU4Rec
from nostrade.baselines.item2vec import item2vec_embeddings
from nostrade.baselines.itemknn import ItemKNN
from nostrade.baselines.lightgcn import LightGCN
from nostrade.baselines.ncf import NCF
from nostrade.baselines.popularity import Popularity

BASELINES = {
    "popularity": Popularity,
    "als": ALS,
    "itemknn": ItemKNN,
    "ease": EASE,
    "lightgcn": LightGCN,
    "gru4rec": GRU4Rec,
    "ncf": NCF,
    "content": Content,
}

__all__ = ["ALS", "BASELINES", "Content", "EASE", "GRU4Rec", "ItemKNN", "LightGCN", "NCF", "Popularity", "item2vec_embeddings"]
