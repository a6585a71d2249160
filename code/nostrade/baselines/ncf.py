"""NeuMF (He et al., WWW 2017, "Neural Collaborative Filtering"): a GMF tower and an MLP tower, fused.

GMF: p_u ⊙ q_i. MLP: [p'_u; q'_i] through ReLU layers (``mlp_layers``: the concatenation's width, then each
layer's; the paper's tower halves at every layer). The output layer reads both towers' last vectors
concatenated: one logit per (user, item). Trained as in the paper: every training (user, item) pair is a
positive with ``negatives`` items drawn uniformly from those the user has not seen (a fresh draw every epoch),
binary cross-entropy, Adam; without the paper's pretraining of the two towers (its NeuMF without pretraining is
a little below). Early stopping on the data set's own validation cases (NDCG@10, full ranking: nostrade.split,
nostrade.evaluate), scored as any history is.

Scoring any history (at test time every history includes the validation item; in serving it is a new person's):
the user's two vectors are fitted to the history with the item side frozen, the fold-in ALS does by least
squares: ``fold_in_steps`` full-batch Adam steps from zero on the expected training loss (the history's items
positive, every other item negative with weight negatives × |history| / |other items|, the expected count of the
sampled draw). A row's loss involves only its own vectors, so a history scores the same alone as in a batch; an
empty history keeps zero vectors. The learned user embeddings only serve training.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from nostrade.baselines.interactions import interaction_matrix
from nostrade.dataset import Dataset
from nostrade.evaluate import history_mask, metrics_from_ranks, target_ranks
from nostrade.sequences import Sequences
from nostrade.split import EvalCases, split_of


@dataclass(frozen=True)
class NCFConfig:
    gmf_dim: int = 16  # GMF predictive factors
    mlp_layers: tuple[int, ...] = (64, 32, 16)  # [p'; q'] width, then each ReLU layer (the paper's 16 factors)
    negatives: int = 4  # sampled negatives per positive (the paper's best ratio is 3-6)
    epochs: int = 40
    batch_size: int = 1024
    lr: float = 2e-3
    patience: int = 5  # epochs without a better validation NDCG@10 before stopping
    fold_in_steps: int = 10  # on ML-100K, 10 steps fold validation histories in as well as training fitted them
    fold_in_lr: float = 0.1
    fold_in_l2: float = 1e-2  # on the folded-in user vectors: a history of one title stays a modest vector
    score_batch: int = 256  # histories folded in at a time (memory: score_batch x n_items x mlp_layers[1])
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "mlp_layers", tuple(self.mlp_layers))  # a list when read back from a checkpoint
        if len(self.mlp_layers) < 2 or self.mlp_layers[0] % 2:
            raise ValueError(f"mlp_layers: {self.mlp_layers} needs an even input width and at least one layer")
        if self.negatives < 1 or self.epochs < 1:
            raise ValueError(f"negatives ({self.negatives}) and epochs ({self.epochs}) must be at least 1")


class NeuMF(nn.Module):
    """The item side and both towers; users come in as vectors (trained embeddings, or folded in)."""

    def __init__(self, n_items: int, gmf_dim: int, mlp_layers: tuple[int, ...]):
        super().__init__()
        self.gmf_dim, self.mlp_dim = gmf_dim, mlp_layers[0] // 2
        self.item_gmf = nn.Embedding(n_items + 1, gmf_dim)
        self.item_mlp = nn.Embedding(n_items + 1, self.mlp_dim)
        nn.init.normal_(self.item_gmf.weight, std=0.01)
        nn.init.normal_(self.item_mlp.weight, std=0.01)
        self.first = nn.Linear(mlp_layers[0], mlp_layers[1])
        self.tower = nn.Sequential(*(layer for width, out in zip(mlp_layers[1:-1], mlp_layers[2:])
                                     for layer in (nn.Linear(width, out), nn.ReLU())))
        self.predict = nn.Linear(gmf_dim + mlp_layers[-1], 1)

    def logits(self, user_gmf: torch.Tensor, user_mlp: torch.Tensor, iid: torch.Tensor) -> torch.Tensor:
        """User vectors (B, gmf_dim), (B, mlp_dim) and items ``iid`` (B, K), or (1, K) for the same items for
        everyone -> (B, K) logits. The MLP's first layer is applied to the user and item halves of [p'; q']
        apart, so scoring the whole catalogue builds no (B, K, 2 mlp_dim) concatenation."""
        w_user, w_item = self.first.weight.split(self.mlp_dim, dim=1)
        hidden = (user_mlp @ w_user.T)[:, None] + self.item_mlp(iid) @ w_item.T + self.first.bias
        mlp = self.tower(F.relu(hidden))
        w_gmf, w_mlp = self.predict.weight[0].split([self.gmf_dim, mlp.shape[-1]])
        gmf = (self.item_gmf(iid) @ (user_gmf * w_gmf)[:, :, None]).squeeze(-1)
        return gmf + mlp @ w_mlp + self.predict.bias


def seen_keys(user_items) -> np.ndarray:
    """Sorted keys user * n_cols + iid of a CSR user x item matrix's entries (CSR order is already sorted)."""
    rows = np.repeat(np.arange(user_items.shape[0]), np.diff(user_items.indptr))
    return rows * user_items.shape[1] + user_items.indices


def sample_negatives(keys: np.ndarray, n_cols: int, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One item per entry of ``users``, uniform over 1..n_cols - 1 among the items that user has not seen
    (``keys``: seen_keys); the draws that hit a seen item are redrawn until none does."""
    items = rng.integers(1, n_cols, len(users))
    redo = np.arange(len(users))
    while len(redo):
        key = users[redo] * n_cols + items[redo]
        hit = keys[np.minimum(np.searchsorted(keys, key), len(keys) - 1)] == key
        redo = redo[hit]
        items[redo] = rng.integers(1, n_cols, len(redo))
    return items


class NCF:
    def __init__(self, seed: int = 0, device: str | None = None, **options):
        self.cfg = NCFConfig(**options, seed=seed)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def fit(self, dataset: Dataset, train: Sequences) -> "NCF":
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        self.n_items = dataset.n_items
        self.net = NeuMF(self.n_items, cfg.gmf_dim, cfg.mlp_layers).to(self.device)
        user_gmf = nn.Embedding(train.n_users, cfg.gmf_dim).to(self.device)
        user_mlp = nn.Embedding(train.n_users, self.net.mlp_dim).to(self.device)
        for table in (user_gmf, user_mlp):
            nn.init.normal_(table.weight, std=0.01)
        optimizer = torch.optim.Adam([*self.net.parameters(), *user_gmf.parameters(), *user_mlp.parameters()],
                                     lr=cfg.lr)
        user_items = interaction_matrix(train, self.n_items)
        keys, n_cols = seen_keys(user_items), user_items.shape[1]
        users, items = keys // n_cols, keys % n_cols
        sampled = np.repeat(users[np.diff(user_items.indptr)[users] < self.n_items], cfg.negatives)  # not all seen
        pair_users = torch.from_numpy(np.concatenate([users, sampled]))
        labels = torch.cat([torch.ones(len(users)), torch.zeros(len(sampled))])
        valid = split_of(dataset).valid
        best = (-1.0, None, 0)
        self.history = []
        epochs = tqdm(range(cfg.epochs), desc="ncf", leave=False, disable=None)
        for epoch in epochs:
            pair_items = torch.from_numpy(np.concatenate([items, sample_negatives(keys, n_cols, sampled, rng)]))
            for batch in torch.randperm(len(labels), generator=generator).split(cfg.batch_size):
                u, i, y = (t[batch].to(self.device) for t in (pair_users, pair_items, labels))
                logits = self.net.logits(user_gmf(u), user_mlp(u), i[:, None]).squeeze(1)
                loss = F.binary_cross_entropy_with_logits(logits, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            ndcg = self.validation_ndcg(valid, user_gmf, user_mlp)
            self.history.append({"epoch": epoch + 1, "loss": loss.item(), "valid_ndcg@10": ndcg})
            epochs.set_postfix(valid_ndcg=f"{ndcg:.4f}")
            if ndcg > best[0]:
                best = (ndcg, copy.deepcopy(self.net.state_dict()), epoch + 1)
            elif epoch + 1 - best[2] >= cfg.patience:
                break
        self.best_valid_ndcg, self.best_epoch = best[0], best[2]
        self.net.load_state_dict(best[1])
        return self

    @torch.no_grad()
    def validation_ndcg(self, valid: EvalCases, user_gmf: nn.Embedding, user_mlp: nn.Embedding) -> float:
        """NDCG@10 of the validation cases (full ranking, EVAL.md), each user scored with their trained vectors:
        a validation history is exactly that user's training data, what the vectors were fitted to."""
        if not len(valid):
            return 0.0
        users = torch.from_numpy(valid.users).to(self.device)
        every_item = torch.arange(self.n_items + 1, device=self.device)[None]
        scores = torch.cat([self.net.logits(user_gmf(u), user_mlp(u), every_item).cpu()
                            for u in users.split(self.cfg.score_batch)])
        ranks = target_ranks(scores, torch.from_numpy(valid.target), history_mask(valid.history, self.n_items))
        return metrics_from_ranks(ranks.numpy())["ndcg@10"]

    def fold_in(self, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_items + 1) bool histories -> each row's GMF and MLP user vectors (module docstring)."""
        cfg, n_items = self.cfg, self.n_items
        n_positive = positive.sum(dim=1, keepdim=True)
        weight = torch.where(positive, 1.0, cfg.negatives * n_positive / (n_items - n_positive).clamp(min=1))
        weight[:, 0] = 0.0  # padding
        target = positive.float()
        every_item = torch.arange(n_items + 1, device=self.device)[None]
        user = torch.zeros(len(positive), cfg.gmf_dim + self.net.mlp_dim, device=self.device, requires_grad=True)
        optimizer = torch.optim.Adam([user], lr=cfg.fold_in_lr)
        with torch.enable_grad():
            for _ in range(cfg.fold_in_steps):
                logits = self.net.logits(user[:, :cfg.gmf_dim], user[:, cfg.gmf_dim:], every_item)
                loss = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
                loss = loss + cfg.fold_in_l2 / 2 * user.square().sum()
                optimizer.zero_grad()
                loss.backward(inputs=[user])
                optimizer.step()
        user = user.detach()
        return user[:, :cfg.gmf_dim], user[:, cfg.gmf_dim:]

    @torch.no_grad()
    def score(self, history: Sequences) -> torch.Tensor:
        seen = torch.from_numpy(interaction_matrix(history, self.n_items).toarray() > 0).to(self.device)
        every_item = torch.arange(self.n_items + 1, device=self.device)[None]
        rows = []
        for positive in seen.split(self.cfg.score_batch):
            user_gmf, user_mlp = self.fold_in(positive)
            rows.append(self.net.logits(user_gmf, user_mlp, every_item).cpu())
        return torch.cat(rows) if rows else torch.zeros(0, self.n_items + 1)

    def config(self) -> dict:
        return {**dataclasses.asdict(self.cfg), "n_items": self.n_items}

    def state_dict(self) -> dict:
        return self.net.state_dict()

    @classmethod
    def from_state(cls, config: dict, state: dict) -> "NCF":
        """The fitted model, on the CPU (where serving runs)."""
        options = {k: v for k, v in config.items() if k not in ("n_items", "seed")}
        model = cls(seed=config["seed"], device="cpu", **options)
        model.n_items = config["n_items"]
        model.net = NeuMF(model.n_items, model.cfg.gmf_dim, model.cfg.mlp_layers)
        model.net.load_state_dict(state)
        return model
