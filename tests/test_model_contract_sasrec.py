"""SASRec passes the same block check as every baseline (tests/model_contract.py)."""
import dataclasses


from model_contract import ModelContract, one_torch_thread  # noqa: F401 (autouse)

from nostrade.model import SASRecConfig
from nostrade.split import leave_one_out
from nostrade.train import TrainConfig, train_sasrec


class SASRecUnderContract:
    """fit/score around nostrade.train: trains on exactly the given sequences (validation only steers stopping)."""

    def __init__(self, seed: int, **model_options):
        self.seed, self.model_options = seed, model_options

    def fit(self, dataset, train):
        split = dataclasses.replace(leave_one_out(dataset.sequences), train=train)
        cfg = SASRecConfig(n_items=dataset.n_items, n_time_bins=dataset.n_time_bins, **self.model_options)
        result = train_sasrec(dataset, cfg, TrainConfig(epochs=40, lr=1e-2, batch_size=16, warmup=5, patience=40,
                                                        weight_decay=0.0, seed=self.seed, num_threads=1,
                                                        progress=False), split=split)
        self.score = result.model.scorer()
        return self


class TestSASRec(ModelContract):
    def make_model(self, seed):
        return SASRecUnderContract(seed, max_len=8, d_model=32, n_heads=2, n_layers=1, dropout=0.0)
