"""Popularity: every user gets the same ranking, items by how many training users have them."""
from __future__ import annotations

import numpy as np
import torch

from nostrade.baselines.interactions import interaction_matrix
from nostrade.dataset import Dataset
from nostrade.sequences import Sequences


class Popularity:
    """Counts each item once per user (RecBole's Pop counts repeated interactions again)."""

    def fit(self, dataset: Dataset, train: Sequences) -> "Popularity":
        users_per_item = np.asarray(interaction_matrix(train, dataset.n_items).sum(axis=0)).ravel()
        self.users_per_item = torch.from_numpy(users_per_item.astype(np.float32))
        return self

    def score(self, history: Sequences) -> torch.Tensor:
        return self.users_per_item.expand(history.n_users, -1).clone()

    def config(self) -> dict:
        return {"n_items": len(self.users_per_item) - 1}

    def state_dict(self) -> dict:
        return {"users_per_item": self.users_per_item}

    @classmethod
    def from_state(cls, config: dict, state: dict) -> "Popularity":
        model = cls()
        model.users_per_item = state["users_per_item"]
        return model
