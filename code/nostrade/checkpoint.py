"""Checkpoints: weights + configs + the iid map they were trained on, written atomically.

A checkpoint holds one served model (``ServedModel``) as its kind (a name), its config (plain values) and its
tensors: a SASRec, an EASE (its weight matrix B), or a two-stage ranker (every generator's tensors, and the
LightGBM model as its text dump in the config). This module knows no model class: ``build_model`` turns a payload
into a model through the loaders it is given, one per kind (nostrade.registry's ``load_checkpoint`` gives every
served kind's). A checkpoint without ``model_kind`` (written before EASE was served) is a SASRec.
It holds only tensors and plain Python values so that it loads with
``torch.load(weights_only=True)``. Loading it against a different iid map or item count raises
CheckpointMismatch instead of a silent size mismatch or, worse, scores attached to the wrong titles.

Integrity: ``content_sha256`` (a sha256 of the model's config and weight tensors) is written with the
weights and checked on every read, and weights holding NaN or inf are refused: a damaged file raises
CheckpointError naming it rather than serving NaN scores. So does a file that is not a checkpoint (empty,
truncated, a folder, another pickle: with ``weights_only`` nothing in it runs). A checkpoint without the
checksum is refused too (one flipped bit in the key's name would otherwise make a damaged file look like one
written before checksums existed): such an old file loads only with ``allow_unchecked=True`` or the
environment variable NOSTRADE_ALLOW_UNCHECKED_CHECKPOINTS=1, and then the finiteness check still applies.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from nostrade.atomic import atomic_write
from nostrade.sequences import Sequences

FORMAT_VERSION = 1
LONG_TEXT = 1000  # characters: readable_config shows a longer config text by its sha256
DEFAULT_KIND = "sasrec"  # a checkpoint without model_kind
ALLOW_UNCHECKED_ENV = "NOSTRADE_ALLOW_UNCHECKED_CHECKPOINTS"


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint: unreadable, not a checkpoint, damaged, or non-finite weights."""


class CheckpointMismatch(ValueError):
    """The checkpoint was trained on another item vocabulary than the one it is being used with."""


class ServedModel(Protocol):
    """What serving (nostrade.scoring) and checkpoints need of a model: SASRec, EASE, the two-stage ranker."""
    kind: str  # its checkpoint format: a key of nostrade.registry.SERVED_KINDS
    window: int | None  # the most recent events of a history it reads (None: all of them)

    def score(self, history: Sequences) -> torch.Tensor: ...  # (batch, n_items + 1), column 0 unused

    def item_vectors(self) -> np.ndarray: ...  # (n_items + 1, d): the space where titles are alike; row 0 padding

    def config(self) -> dict: ...  # plain values, n_items among them; with state_dict() they rebuild it (from_state)

    def state_dict(self) -> dict: ...  # name -> tensor

    # Optional: ``scores_titles`` True where ``served_table(frame)`` gives its item table with any more titles'
    # vectors after it and ``score(history, table=...)`` scores them too (SASRec with use_item_features).


ModelLoader = Callable[[dict, dict], ServedModel]  # (config, state) -> the model: its class's from_state


@dataclass(frozen=True)
class Checkpoint:
    model: ServedModel
    train_cfg: dict
    iid_map_sha256: str
    meta: dict
    metrics: dict
    content_sha256: str | None = None
    lineage: tuple[str, ...] = ()  # content_sha256 of each model it was fine-tuned from, oldest first


def save_checkpoint(path, model: ServedModel, train_cfg, dataset_meta: dict, metrics: dict,
                    training_state: dict | None = None, lineage: list[str] | None = None) -> str:
    """Write the model for serving; returns its content_sha256. ``training_state`` (optimizer, scheduler,
    epoch...) makes it resumable; ``lineage``: the content_sha256 of each model it was fine-tuned from."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    config = model.config()
    payload = {
        "format_version": FORMAT_VERSION,
        "model_kind": model.kind,
        "model_state": state,
        "model_cfg": config,
        "content_sha256": content_sha256(state, config),
        "train_cfg": asdict(train_cfg) if not isinstance(train_cfg, dict) else dict(train_cfg),
        "iid_map_sha256": dataset_meta["iid_map_sha256"],
        "n_items": config["n_items"],
        "meta": dataset_meta,
        "metrics": metrics,
    }
    if training_state is not None:
        payload["training_state"] = training_state
    if lineage is not None:
        payload["lineage"] = list(lineage)
    with atomic_write(path) as f:
        torch.save(payload, f)
    return payload["content_sha256"]


def readable_config(model: ServedModel) -> dict:
    """The model's config for people (run records, health checks, benchmarks): a long text in it (the ranker's
    LightGBM model dump) as its length and sha256."""
    def readable(value):
        if isinstance(value, dict):
            return {k: readable(v) for k, v in value.items()}
        if isinstance(value, str) and len(value) > LONG_TEXT:
            return f"<{len(value):,} characters, sha256 {hashlib.sha256(value.encode()).hexdigest()}>"
        return value
    return readable(model.config())


def content_sha256(state: dict, config: dict) -> str:
    """sha256 of a model's config and its weight tensors (names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(state[name].shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy())
    return digest.hexdigest()


def read_checkpoint(path: str | Path, map_location="cpu", allow_unchecked: bool | None = None) -> dict:
    """The raw payload (plain values and tensors only), checked: CheckpointError if the file is not a whole,
    finite checkpoint with its checksum. ``allow_unchecked``: accept a file without a checksum (an old format;
    default: the environment variable NOSTRADE_ALLOW_UNCHECKED_CHECKPOINTS=1)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint; train one with `python -m nostrade.train`")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: refused: it holds objects other than tensors and plain values "
                              "(not a nostrade checkpoint; nothing in it was run)") from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read: {err.strerror or err}") from None
    except Exception as err:  # torch's reader: empty, truncated or garbled archives
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (empty, truncated or damaged: {reason})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("model_state"), dict) \
            or "model_cfg" not in payload:
        raise CheckpointError(f"{path}: not a nostrade checkpoint (no model_state / model_cfg)")
    if allow_unchecked is None:
        allow_unchecked = os.environ.get(ALLOW_UNCHECKED_ENV) == "1"
    check_integrity(payload, path, allow_unchecked)
    return payload


def check_integrity(payload: dict, path, allow_unchecked: bool = False) -> None:
    state = payload["model_state"]
    expected = payload.get("content_sha256")
    if expected is None and not allow_unchecked:
        raise CheckpointError(f"{path}: no checksum (content_sha256): damaged, or written before checksums existed; "
                              f"refusing it unchecked (an old file you trust loads with {ALLOW_UNCHECKED_ENV}=1)")
    if expected is not None and content_sha256(state, payload["model_cfg"]) != expected:
        raise CheckpointError(f"{path}: damaged: its weights do not match the checksum written with them; "
                              "restore a good copy or retrain")
    for name, tensor in state.items():
        if not torch.is_tensor(tensor):
            raise CheckpointError(f"{path}: not a nostrade checkpoint (model_state '{name}' is not a tensor)")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: weight '{name}' holds {bad} non-finite values (NaN or inf); refusing "
                                  "to use it")


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


def build_model(payload: dict, path, loaders: Mapping[str, ModelLoader]) -> ServedModel:
    """The payload's model, built by the loader of its kind; CheckpointError where none fits."""
    kind = payload.get("model_kind", DEFAULT_KIND)
    if kind not in loaders:
        raise CheckpointError(f"{path}: model kind {kind!r} is not one of {tuple(loaders)}")
    try:
        return loaders[kind](payload["model_cfg"], payload["model_state"])
    except (KeyError, TypeError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: its {kind} config and weights do not fit together ({reason})") from None


def checkpoint_of(payload: dict, model: ServedModel) -> Checkpoint:
    return Checkpoint(model, payload["train_cfg"], payload["iid_map_sha256"], payload["meta"], payload["metrics"],
                      payload.get("content_sha256"), tuple(payload.get("lineage", ())))
