"""GRU4Rec-style next-item model (Hidasi et al. 2016; the sequence candidate generator of seed 002).

Items -> embedding -> GRU -> hidden state · item embeddings (tied) scores the whole catalogue. Trained like
SASRec here: every position of a user's (most recent ``max_len + 1``) training events predicts the next one, all
positions of a sequence in one pass, with full-catalogue cross-entropy. Sequences are right-padded, so the GRU
reads each history from its first event and its state at the last real event is exact (padding only follows it).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from nostrade.baselines.interactions import known_events
from nostrade.dataset import Dataset
from nostrade.sequences import Sequences


def right_padded(seqs: Sequences, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_users, max_len) iids of the most recent ``max_len`` events, left-aligned and zero-padded; and lengths."""
    recent = seqs.last(max_len)
    iid = np.zeros((seqs.n_users, max_len), dtype=np.int64)
    iid[recent.row_of_event(), recent.position_of_event()] = recent.iid
    return torch.from_numpy(iid), torch.from_numpy(recent.lengths)


class GRUNet(nn.Module):
    def __init__(self, n_items: int, dim: int, layers: int, dropout: float):
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, dim, num_layers=layers, batch_first=True)

    def forward(self, iid: torch.Tensor) -> torch.Tensor:
        """(B, L) iids -> (B, L, dim) hidden states."""
        hidden, _ = self.gru(self.dropout(self.item_emb(iid)))
        return self.dropout(hidden)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.item_emb.weight.T


class GRU4Rec:
    def __init__(self, dim: int = 64, layers: int = 1, dropout: float = 0.2, max_len: int = 50, epochs: int = 30,
                 batch_size: int = 64, lr: float = 5e-3, weight_decay: float = 0.0, seed: int = 0,
                 device: str | None = None):
        self.dim, self.layers, self.dropout, self.max_len = dim, layers, dropout, max_len
        self.epochs, self.batch_size, self.lr, self.weight_decay, self.seed = epochs, batch_size, lr, weight_decay, seed
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def fit(self, dataset: Dataset, train: Sequences) -> "GRU4Rec":
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        self.n_items = dataset.n_items
        self.net = GRUNet(self.n_items, self.dim, self.layers, self.dropout).to(self.device)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sequences, lengths = right_padded(train.select(known_events(train, self.n_items)), self.max_len + 1)
        sequences = sequences[lengths >= 2]
        self.net.train()
        for _ in tqdm(range(self.epochs), desc="gru4rec", leave=False, disable=None):
            for batch in torch.randperm(len(sequences), generator=generator).split(self.batch_size):
                seq = sequences[batch].to(self.device)
                inputs, targets = seq[:, :-1], seq[:, 1:]
                valid = targets > 0
                hidden = self.net(inputs)[valid]  # only positions that have a next item
                loss = F.cross_entropy(self.net.logits(hidden), targets[valid])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.net.eval()
        return self

    @torch.no_grad()
    def score(self, history: Sequences) -> torch.Tensor:
        """Scores after the last event of each history; an empty history gets the scores of a zero state."""
        iid, lengths = right_padded(history.select(known_events(history, self.n_items)), self.max_len)
        hidden = self.net(iid.to(self.device))
        last = hidden[torch.arange(len(iid)), (lengths - 1).clamp(min=0)]
        last[lengths == 0] = 0
        return self.net.logits(last).cpu()

    def config(self) -> dict:
        return {"dim": self.dim, "layers": self.layers, "dropout": self.dropout, "max_len": self.max_len,
                "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "weight_decay": self.weight_decay, "seed": self.seed, "n_items": self.n_items}

    def state_dict(self) -> dict:
        return self.net.state_dict()

    @classmethod
    def from_state(cls, config: dict, state: dict) -> "GRU4Rec":
        """The fitted model, on the CPU (where serving runs)."""
        model = cls(**{k: v for k, v in config.items() if k != "n_items"}, device="cpu")
        model.n_items = config["n_items"]
        model.net = GRUNet(model.n_items, model.dim, model.layers, model.dropout)
        model.net.load_state_dict(state)
        model.net.eval()
        return model
