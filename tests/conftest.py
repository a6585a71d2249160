"""Shared fixtures.

``processed_sample`` and ``processed_anime`` each run the prep pipeline once per test session into
a temporary folder and return its pathlib.Path, readable with ``nostrade.dataset.load_dataset``.
Their iid_map.json goes into that same folder (artifacts = out), never into the repo's artifacts/.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from nostrade import prep
from nostrade.synthetic import SyntheticConfig

# A small synthetic set with timestamps: 300 users, 100 items, ~30 events per user, 2 years of months.
SAMPLE_SYNTHETIC = SyntheticConfig(n_users=300, n_items=100, interactions_per_user=30, seed=7,
                                   start="2016-01-01", end="2018-01-01")


@pytest.fixture(scope="session")
def processed_sample(tmp_path_factory) -> Path:
    """Processed synthetic data (with timestamps, monthly time bins, min_item_users=1)."""
    root = tmp_path_factory.mktemp("processed_sample")
    out = root / "processed"
    prep.run(prep.PrepConfig(source="synthetic", synthetic=SAMPLE_SYNTHETIC, synthetic_dir=root / "raw",
                             out=out, artifacts=out, min_item_users=1))
    return out


@pytest.fixture(scope="session")
def processed_anime(tmp_path_factory) -> Path:
    """The shipped real sample (data/sample/, 956 users) processed with the default settings."""
    out = tmp_path_factory.mktemp("processed_anime") / "processed"
    prep.run(prep.PrepConfig(source="anime", out=out, artifacts=out))
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(processed_sample, tmp_path_factory) -> Path:
    """A random-weight small SASRec for ``processed_sample``, saved with nostrade.checkpoint (serving tests)."""
    import torch

    from nostrade.checkpoint import save_checkpoint
    from nostrade.dataset import load_dataset
    from nostrade.sasrec_net import SASRec, SASRecConfig

    data = load_dataset(processed_sample)
    torch.manual_seed(0)
    cfg = SASRecConfig(n_items=data.n_items, n_time_bins=data.n_time_bins, max_len=20, d_model=16, n_heads=2,
                       n_layers=1, dropout=0.0)
    path = tmp_path_factory.mktemp("tiny_checkpoint") / "sasrec.pt"
    save_checkpoint(path, SASRec(cfg), {"note": "random weights, for serving tests"}, data.meta, {})
    return path


@pytest.fixture(scope="session")
def anime_checkpoint(processed_anime, tmp_path_factory) -> Path:
    """A small SASRec trained for 2 epochs on ``processed_anime`` (app, browser and fine-tune tests)."""
    from nostrade.dataset import load_dataset
    from nostrade.sasrec_net import SASRecConfig
    from nostrade.sasrec_training import TrainConfig, train_sasrec

    data = load_dataset(processed_anime)
    cfg = SASRecConfig(n_items=data.n_items, n_time_bins=data.n_time_bins, max_len=20, d_model=16, n_heads=2,
                       n_layers=1, dropout=0.1)
    path = tmp_path_factory.mktemp("anime_checkpoint") / "sasrec.pt"
    train_sasrec(data, cfg, TrainConfig(epochs=2, warmup=2, num_threads=1, progress=False), checkpoint_path=path)
    return path


@pytest.fixture(scope="session")
def ease_checkpoint(processed_anime, tmp_path_factory) -> Path:
    """EASE on the order-free anime sample: `python -m nostrade.train --model ease`."""
    from nostrade import train

    folder = tmp_path_factory.mktemp("ease_checkpoint")
    path = folder / "model.pt"
    assert train.main(["--data", str(processed_anime), "--out", str(path), "--metrics",
                       str(folder / "metrics.json"), "--model", "ease"]) == 0
    return path


@pytest.fixture(scope="session")
def ranker_checkpoint(processed_anime, tmp_path_factory) -> Path:
    """A two-stage ranker of cheap generators for ``processed_anime``: `python -m nostrade.train --model ranker`."""
    from nostrade import train

    folder = tmp_path_factory.mktemp("ranker_checkpoint")
    path = folder / "ranker.pt"
    assert train.main(["--data", str(processed_anime), "--out", str(path), "--metrics", str(folder / "metrics.json"),
                       "--model", "ranker", "--generators", "itemknn,ease,content,popularity",
                       "--n-candidates", "50"]) == 0
    return path
