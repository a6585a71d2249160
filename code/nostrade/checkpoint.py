"""Checkpoints: weights + configs + the iid map they were trained on, written atomically.

A checkpoint holds one served model (nostrade.scoring.ServedModel) of a kind in MODEL_KINDS: a SASRec, or an
EASE (its weight matrix B). A checkpoint without ``model_kind`` (written before EASE was served) is a SASRec.
It holds only tensors and plain Python values so that it loads with
``torch.load(weights_only=True)``. Loading it against a different iid map or item count raises
CheckpointMismatch instead of a silent size mismatch or, worse, scores attached to the wrong titles.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from nostrade.atomic import atomic_write
from nostrade.baselines.ease import EASE
from nostrade.model import SASRec
from nostrade.scoring import ServedModel

FORMAT_VERSION = 1
MODEL_KINDS = {"sasrec": SASRec, "ease": EASE}


class CheckpointMismatch(ValueError):
    """The checkpoint was trained on another item vocabulary than the one it is being used with."""


@dataclass(frozen=True)
class Checkpoint:
    model: ServedModel
    train_cfg: dict
    iid_map_sha256: str
    meta: dict
    metrics: dict


def save_checkpoint(path, model: ServedModel, train_cfg, dataset_meta: dict, metrics: dict,
                    training_state: dict | None = None) -> None:
    """Write the model for serving; ``training_state`` (optimizer, scheduler, epoch...) makes it resumable."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    config = model.config()
    payload = {
        "format_version": FORMAT_VERSION,
        "model_kind": model.kind,
        "model_state": state,
        "model_cfg": config,
        "train_cfg": asdict(train_cfg) if not isinstance(train_cfg, dict) else dict(train_cfg),
        "iid_map_sha256": dataset_meta["iid_map_sha256"],
        "n_items": config["n_items"],
        "meta": dataset_meta,
        "metrics": metrics,
    }
    if training_state is not None:
        payload["training_state"] = training_state
    with atomic_write(path) as f:
        torch.save(payload, f)


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The raw payload (plain values and tensors only)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint; train one with `python -m nostrade.train`")
    return torch.load(path, map_location=map_location, weights_only=True)


def check_vocabulary(payload: dict, path, expected_iid_map_sha256: str | None = None,
                     expected_n_items: int | None = None) -> None:
    if expected_iid_map_sha256 is not None and payload["iid_map_sha256"] != expected_iid_map_sha256:
        raise CheckpointMismatch(
            f"{path}: trained on iid map sha256 {payload['iid_map_sha256'][:12]}…, but the data in use has "
            f"{expected_iid_map_sha256[:12]}…; retrain on this data or use the iid_map.json it was trained with")
    if expected_n_items is not None and payload["n_items"] != expected_n_items:
        raise CheckpointMismatch(
            f"{path}: trained on {payload['n_items']} items, but the data in use has {expected_n_items}; "
            "retrain on this data or use the iid_map.json it was trained with")


def load_checkpoint(path: str | Path, expected_iid_map_sha256: str | None = None,
                    expected_n_items: int | None = None, map_location="cpu") -> Checkpoint:
    payload = read_checkpoint(path, map_location)
    check_vocabulary(payload, path, expected_iid_map_sha256, expected_n_items)
    kind = payload.get("model_kind", "sasrec")
    if kind not in MODEL_KINDS:
        raise ValueError(f"{path}: model kind {kind!r} is not one of {tuple(MODEL_KINDS)}")
    model = MODEL_KINDS[kind].from_state(payload["model_cfg"], payload["model_state"])
    return Checkpoint(model, payload["train_cfg"], payload["iid_map_sha256"], payload["meta"], payload["metrics"])
