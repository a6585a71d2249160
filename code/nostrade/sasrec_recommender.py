"""SASRec as a model among models: the baselines' fit/score interface around nostrade.sasrec_training.

    model = SASRecRecommender(seed=0, use_feedback=False, epochs=20)   # any SASRecConfig / TrainConfig field
    model.fit(dataset, train)     # early stopping on the data set's own validation cases (nostrade.split)
    model.score(history) -> torch.Tensor (batch, n_items + 1)

``init="item2vec"`` starts the item table from item2vec vectors of the training part (nostrade.baselines.item2vec),
rescaled to the table's own initial spread; items item2vec cannot place keep their random row.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from nostrade.baselines.item2vec import item2vec_embeddings
from nostrade.dataset import Dataset
from nostrade.sasrec_net import SASRec, SASRecConfig
from nostrade.sequences import Sequences
from nostrade.split import split_of
from nostrade.sasrec_training import DATA_FIELDS, TrainConfig, TrainResult, train_sasrec

INITS = ("random", "item2vec")
MODEL_FIELDS = {f.name for f in dataclasses.fields(SASRecConfig)} - set(DATA_FIELDS)
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


class SASRecRecommender:
    def __init__(self, seed: int = 0, init: str = "random", **options):
        unknown = sorted(set(options) - MODEL_FIELDS - TRAIN_FIELDS)
        if unknown:
            raise ValueError(f"sasrec: unknown options {unknown}")
        if init not in INITS:
            raise ValueError(f"init: {init!r} is not one of {INITS}")
        self.init = init
        self.model_options = {k: v for k, v in options.items() if k in MODEL_FIELDS}
        self.train_cfg = TrainConfig(**{k: v for k, v in options.items() if k in TRAIN_FIELDS}, seed=seed)

    def fit(self, dataset: Dataset, train: Sequences) -> "SASRecRecommender":
        split = dataclasses.replace(split_of(dataset), train=train)
        cfg = SASRecConfig(n_items=dataset.n_items, n_time_bins=dataset.n_time_bins, **self.model_options)
        init = item2vec_init(cfg, self.train_cfg.seed, train) if self.init == "item2vec" else None
        self.result: TrainResult = train_sasrec(dataset, cfg, self.train_cfg, split=split, init_state=init)
        self.model = self.result.model
        return self

    def score(self, history: Sequences) -> torch.Tensor:
        return self.model.score(history)

    @property
    def has_like_head(self) -> bool:
        return bool(self.model.cfg.feedback_head)

    def score_and_like(self, history: Sequences) -> tuple[torch.Tensor, torch.Tensor]:
        """``score``, and the feedback head's log P(like) of every title, from one forward pass (the ranker's
        feature)."""
        scores, log_like = self.model.score_parts(history)
        return scores + self.model.cfg.like_weight * log_like, log_like

    def item_vectors(self) -> np.ndarray:
        return self.model.item_vectors()

    def config(self) -> dict:
        """The fitted SASRec's config (``model``), and the options it was trained with."""
        return {"init": self.init, "options": {**self.model_options, **dataclasses.asdict(self.train_cfg)},
                "model": self.model.config(), "n_items": self.model.cfg.n_items}

    def state_dict(self) -> dict:
        return self.model.state_dict()

    @classmethod
    def from_state(cls, config: dict, state: dict) -> "SASRecRecommender":
        options = dict(config["options"])
        model = cls(seed=options.pop("seed"), init=config["init"], **options)
        model.model = SASRec.from_state(config["model"], state)
        return model


def item2vec_init(model_cfg: SASRecConfig, seed: int, train: Sequences) -> dict:
    """SASRec's initial weights (as train_sasrec draws them for this seed) with the item table from item2vec."""
    torch.manual_seed(seed)
    model = SASRec(model_cfg)
    table = model.item_emb.weight.data
    vectors = torch.from_numpy(item2vec_embeddings(train, model_cfg.n_items, model_cfg.d_model, seed=seed))
    placed = vectors.norm(dim=1) > 0
    vectors = vectors * (table[1:].std() / vectors[placed].std())
    table[placed] = vectors[placed]
    return model.state_dict()
