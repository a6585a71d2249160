"""LightGCN (He et al., SIGIR 2020), compact: no feature transforms or non-linearities, only propagation.

Users and items are nodes of one bipartite graph; embeddings are smoothed over the symmetric-normalised
adjacency D^-1/2 A D^-1/2 (a torch.sparse matrix), and the final embedding of a node is the mean of its
layer-0..L embeddings. Trained with BPR on (user, seen item, uniformly sampled item) triples.

Scoring a history not seen in training (at test time every history includes the validation item): the user is the
mean of the history items' propagated embeddings, and items are ranked by the dot product with it. The learned
user embeddings only serve training; every history, old user or new, is scored the same way.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from tqdm import tqdm

from nostrade.baselines.interactions import interaction_matrix
from nostrade.dataset import Dataset
from nostrade.sequences import Sequences


def normalized_adjacency(user_items: sp.csr_matrix) -> torch.Tensor:
    """Sparse (n_users + n_cols)^2 matrix D^-1/2 A D^-1/2 of the bipartite graph (isolated nodes stay 0)."""
    n_users, n_cols = user_items.shape
    adjacency = sp.bmat([[None, user_items], [user_items.T, None]], format="coo", dtype=np.float32)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    inv_sqrt = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1)), 0).astype(np.float32)
    values = inv_sqrt[adjacency.row] * adjacency.data * inv_sqrt[adjacency.col]
    indices = torch.from_numpy(np.vstack([adjacency.row, adjacency.col]).astype(np.int64))
    size = (n_users + n_cols,) * 2
    return torch.sparse_coo_tensor(indices, torch.from_numpy(values), size, check_invariants=True).coalesce()


class LightGCN:
    def __init__(self, dim: int = 64, layers: int = 2, epochs: int = 60, batch_size: int = 8192, lr: float = 1e-2,
                 reg: float = 1e-4, seed: int = 0, device: str | None = None):
        self.dim, self.layers, self.epochs, self.batch_size = dim, layers, epochs, batch_size
        self.lr, self.reg, self.seed = lr, reg, seed
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def propagate(self, embeddings: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        layers = [embeddings]
        for _ in range(self.layers):
            layers.append(torch.sparse.mm(adjacency, layers[-1]))
        return torch.stack(layers).mean(dim=0)

    def fit(self, dataset: Dataset, train: Sequences) -> "LightGCN":
        generator = torch.Generator().manual_seed(self.seed)
        n_users, n_items = train.n_users, dataset.n_items
        user_items = interaction_matrix(train, n_items)
        adjacency = normalized_adjacency(user_items).to(self.device)
        users, items = (torch.from_numpy(a.astype(np.int64)) for a in user_items.nonzero())
        embeddings = torch.nn.Parameter(torch.randn(n_users + n_items + 1, self.dim, generator=generator) * 0.1)
        embeddings.data = embeddings.data.to(self.device)
        optimizer = torch.optim.Adam([embeddings], lr=self.lr)
        for _ in tqdm(range(self.epochs), desc="lightgcn", leave=False, disable=None):
            order = torch.randperm(len(users), generator=generator)
            negatives = torch.randint(1, n_items + 1, (len(users),), generator=generator)
            for batch in order.split(self.batch_size):
                u = users[batch].to(self.device)
                i = (items[batch] + n_users).to(self.device)
                j = (negatives[batch] + n_users).to(self.device)
                final = self.propagate(embeddings, adjacency)
                margin = (final[u] * (final[i] - final[j])).sum(dim=1)
                l2 = embeddings[u].square().sum() + embeddings[i].square().sum() + embeddings[j].square().sum()
                loss = -F.logsigmoid(margin).mean() + self.reg * l2 / (2 * len(batch))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            self.item_embeddings = self.propagate(embeddings, adjacency)[n_users:].cpu()
        return self

    def score(self, history: Sequences) -> torch.Tensor:
        """Dot product of every item with the mean of the history items' propagated embeddings (0 if empty)."""
        user_items = interaction_matrix(history, len(self.item_embeddings) - 1)
        counts = np.maximum(np.asarray(user_items.sum(axis=1)).ravel(), 1)
        mean_of_history = sp.diags(1 / counts) @ user_items @ self.item_embeddings.numpy()
        return torch.from_numpy(mean_of_history.astype(np.float32)) @ self.item_embeddings.T

    def config(self) -> dict:
        return {"dim": self.dim, "layers": self.layers, "epochs": self.epochs, "batch_size": self.batch_size,
                "lr": self.lr, "reg": self.reg, "seed": self.seed, "n_items": len(self.item_embeddings) - 1}

    def state_dict(self) -> dict:
        return {"item_embeddings": self.item_embeddings}

    @classmethod
    def from_state(cls, config: dict, state: dict) -> "LightGCN":
        model = cls(**{k: v for k, v in config.items() if k != "n_items"}, device="cpu")
        model.item_embeddings = state["item_embeddings"]
        return model
