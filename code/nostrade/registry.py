"""The registry: every model by name, and loading a checkpoint of any served kind.

    model = make_model(name, seed=0, **options)     # hyper-parameters as keyword arguments, with defaults
    model.fit(dataset: Dataset, train: Sequences) -> model
    model.score(history: Sequences) -> torch.Tensor (batch, n_items + 1)     # a nostrade.evaluate Scorer
    checkpoint = load_checkpoint(path)               # nostrade.checkpoint's reader, with the class of each kind

The top of the library's layers below the applications (the command lines, predict, the API, the app): it may
import every model; no model imports it (the ranker is given its generators' classes, GENERATOR_MODELS).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from nostrade.baselines import BASELINES
from nostrade.baselines.ease import EASE
from nostrade.checkpoint import Checkpoint, build_model, check_vocabulary, checkpoint_of, read_checkpoint
from nostrade.ranker import TwoStage, has_seed
from nostrade.sasrec_net import SASRec
from nostrade.sasrec_recommender import SASRecRecommender

GENERATOR_MODELS = {**BASELINES, "sasrec": SASRecRecommender}  # what the two-stage ranker may retrieve with
MODELS = {**GENERATOR_MODELS, "ranker": partial(TwoStage, models=GENERATOR_MODELS)}
SERVED_KINDS = {"sasrec": SASRec.from_state, "ease": EASE.from_state,  # a checkpoint's model_kind -> its loader
                "ranker": partial(TwoStage.from_state, models=GENERATOR_MODELS)}


def takes_seed(name: str) -> bool:
    """Whether the model has randomness (a ``seed`` option); the others give the same scores every run."""
    return has_seed(MODELS[name])


def make_model(name: str, seed: int = 0, **options):
    """An unfitted model by name; ``seed`` goes to the models that have randomness."""
    if name not in MODELS:
        raise ValueError(f"model: {name!r} is not one of {tuple(MODELS)}")
    if takes_seed(name):
        options["seed"] = seed
    return MODELS[name](**options)


def load_checkpoint(path: str | Path, expected_iid_map_sha256: str | None = None,
                    expected_n_items: int | None = None, map_location="cpu",
                    allow_unchecked: bool | None = None) -> Checkpoint:
    """The checkpoint's model of any served kind, checked (nostrade.checkpoint: CheckpointError, CheckpointMismatch)."""
    payload = read_checkpoint(path, map_location, allow_unchecked)
    check_vocabulary(payload, path, expected_iid_map_sha256, expected_n_items)
    return checkpoint_of(payload, build_model(payload, path, SERVED_KINDS))
