"""Every model by name, behind one interface (the baselines' and SASRec's):

    model = make_model(name, seed=0, **options)     # hyper-parameters as keyword arguments, with defaults
    model.fit(dataset: Dataset, train: Sequences) -> model
    model.score(history: Sequences) -> torch.Tensor (batch, n_items + 1)     # a nostrade.evaluate Scorer
"""
from __future__ import annotations

import inspect

from nostrade.baselines import BASELINES
from nostrade.ranker import TwoStage
from nostrade.sasrec import SASRecRecommender

MODELS = {**BASELINES, "sasrec": SASRecRecommender, "ranker": TwoStage}


def takes_seed(name: str) -> bool:
    """Whether the model has randomness (a ``seed`` option); the others give the same scores every run."""
    return "seed" in inspect.signature(MODELS[name]).parameters


def make_model(name: str, seed: int = 0, **options):
    """An unfitted model by name; ``seed`` goes to the models that have randomness."""
    if name not in MODELS:
        raise ValueError(f"model: {name!r} is not one of {tuple(MODELS)}")
    if takes_seed(name):
        options["seed"] = seed
    return MODELS[name](**options)
