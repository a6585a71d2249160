"""The models the benchmarks time: the served default of the embedded sample, and labelled extra rows.

    checkpoint, data = served.default_model()          # checkpoints/model.pt on data/processed, made if absent
    checkpoint, data = served.ranker_model()           # checkpoints/ranker.pt (auto's generators), made if absent
    checkpoint, data = served.sasrec_model()           # checkpoints/sasrec.pt (the set model), made if absent

The default is what `make train` writes (``python -m nostrade.train``: --model auto, the best of EASE, the ranker
and SASRec by served validation); the ranker row is ``--model ranker`` with the generators auto gives it, the
SASRec row ``--model sasrec`` (the sample's order is not time: the set model). Each is prepared and trained only
where its files are missing, so a second run times the same files.
"""
from __future__ import annotations

from pathlib import Path

import torch

from nostrade import prep, train
from nostrade.checkpoint import save_checkpoint
from nostrade.dataset import load_dataset
from nostrade.sasrec_net import SASRec, SASRecConfig

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "processed"
DEFAULT = REPO / "checkpoints" / "model.pt"
RANKER = REPO / "checkpoints" / "ranker.pt"
SASREC = REPO / "checkpoints" / "sasrec.pt"


def processed(data: Path = DATA) -> Path:
    """The embedded sample prepared into ``data`` (as make_processed_data.py) where it is not yet."""
    if not (data / "meta.json").exists():
        prep.run(prep.PrepConfig(out=data, artifacts=REPO / "artifacts"))
    return data


def trained(checkpoint: Path, data: Path, metrics: Path, *flags: str) -> tuple[Path, Path]:
    """``checkpoint`` on ``data`` (the embedded sample, prepared first where missing), trained with ``flags``
    where it is missing (its run record to ``metrics``)."""
    processed(data)
    if not checkpoint.exists():
        argv = ["--data", str(data), "--out", str(checkpoint), "--metrics", str(metrics), "--no-progress", *flags]
        if train.main(argv) != 0:
            raise SystemExit(f"error: training {checkpoint} failed")
    return checkpoint, data


def default_model(checkpoint: Path = DEFAULT, data: Path = DATA) -> tuple[Path, Path]:
    return trained(checkpoint, data, REPO / "artifacts" / "metrics.json")  # as `make train`


def ranker_model(checkpoint: Path = RANKER, data: Path = DATA) -> tuple[Path, Path]:
    return trained(checkpoint, data, REPO / "artifacts" / "metrics-ranker.json", "--model", "ranker")


def sasrec_model(checkpoint: Path = SASREC, data: Path = DATA) -> tuple[Path, Path]:
    return trained(checkpoint, data, REPO / "artifacts" / "metrics-sasrec.json", "--model", "sasrec")


def random_sasrec(path: Path, data: Path, order_is_time: bool) -> Path:
    """A random-weight SASRec of the default config for ``data``, as for data whose order is (or is not) time:
    latency does not depend on the weights."""
    dataset = load_dataset(data)
    torch.manual_seed(0)
    cfg = SASRecConfig(n_items=dataset.n_items, n_time_bins=dataset.n_time_bins).for_order(order_is_time)
    save_checkpoint(path, SASRec(cfg), {"note": "random weights (benchmark)"}, dataset.meta, {})
    return path
