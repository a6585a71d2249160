"""The check every model passes (as the `implicit` library tests each of its models): a synthetic
block-structured data set where one item per user is withheld and must come back as that user's top
recommendation once the user's own items are excluded.

Groups of users each use one block of items (and the block's genre). User j of a group walks through the
block in a fixed cyclic order, starting right after the item it withholds, so the withheld item is both the
only unseen item of its block (what matrix, graph and content models find) and the next step of the cycle
(what sequence models find). Every item is withheld by some users and seen by the others.

A model's test class inherits ``ModelContract`` and implements ``make_model(seed)``. Test modules that train
torch models import ``one_torch_thread`` too: on this shared 2-core machine tiny models train ~20x faster on one
thread than on two contended ones.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from nostrade.dataset import Dataset
from nostrade.evaluate import history_mask
from nostrade.sequences import DISLIKE, LIKE, LOVE, Sequences

N_GROUPS, BLOCK, USERS_PER_ITEM = 4, 6, 2
N_ITEMS = N_GROUPS * BLOCK


@dataclass(frozen=True)
class Blocks:
    dataset: Dataset  # every user's full sequence (withheld item last)
    train: Sequences  # without the withheld item
    withheld: np.ndarray  # iid per user
    new_history: Sequences  # users never seen in training, one per (group, withheld item)
    new_withheld: np.ndarray


def block_sequence(group: int, withheld: int) -> list[int]:
    """The block walked cyclically from the item after ``withheld``; ``withheld`` last (iids from 1)."""
    return [group * BLOCK + (withheld + 1 + k) % BLOCK + 1 for k in range(BLOCK)]


def make_blocks() -> Blocks:
    cases = [(g, j % BLOCK) for g in range(N_GROUPS) for j in range(BLOCK * USERS_PER_ITEM)]
    full = [block_sequence(g, w) for g, w in cases]
    feedback = [[LIKE, LOVE, LIKE, LOVE, LIKE, LIKE] for _ in full]
    items = pd.DataFrame({
        "iid": np.arange(1, N_ITEMS + 1, dtype=np.int32),
        "item_id": np.arange(101, N_ITEMS + 101),
        "name": [f"item {i}" for i in range(1, N_ITEMS + 1)],
        "genres": [[f"Genre{(i - 1) // BLOCK}"] for i in range(1, N_ITEMS + 1)],
        "type": ["TV"] * N_ITEMS,
    })
    meta = {"source": "synthetic", "synthetic": True, "time_bins": {"scheme": "none", "n_bins": 1},
            "iid_map_sha256": "0" * 64, "n_items": N_ITEMS}
    sequences = Sequences.from_lists(full, feedback)
    dataset = Dataset(items, sequences, np.arange(len(full)), meta)
    train = Sequences.from_lists([s[:-1] for s in full], [f[:-1] for f in feedback])
    new_cases = [(g, w) for g in range(N_GROUPS) for w in range(BLOCK)]
    new_full = [block_sequence(g, w) for g, w in new_cases]
    return Blocks(dataset, train, np.array([s[-1] for s in full]),
                  Sequences.from_lists([s[:-1] for s in new_full]), np.array([s[-1] for s in new_full]))


BLOCKS = make_blocks()


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Autouse in every module that imports it: torch on one thread for that module's tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def top_unseen(scores: torch.Tensor, history: Sequences) -> np.ndarray:
    """Each row's best item among those not in its history (padding excluded)."""
    scores = scores.float().clone()
    mask = history_mask(history, scores.shape[1] - 1)
    mask[:, 0] = True
    scores[mask] = -torch.inf
    return scores.argmax(dim=1).numpy()


class ModelContract:
    """Inherit and implement ``make_model``; every test here must pass for every model."""

    def make_model(self, seed: int):
        raise NotImplementedError

    def rebuild(self, model_class, config: dict, state: dict):
        """The model from its config and state, as nostrade.registry's loader of its kind does."""
        return model_class.from_state(config, state)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls):
        return cls().make_model(seed=0).fit(BLOCKS.dataset, BLOCKS.train)

    def test_withheld_item_ranks_first(self, fitted):
        scores = fitted.score(BLOCKS.train)
        assert scores.shape == (BLOCKS.train.n_users, N_ITEMS + 1) and scores.dtype == torch.float32
        np.testing.assert_array_equal(top_unseen(scores, BLOCKS.train), BLOCKS.withheld)

    def test_new_history_is_folded_in(self, fitted):
        scores = fitted.score(BLOCKS.new_history)
        np.testing.assert_array_equal(top_unseen(scores, BLOCKS.new_history), BLOCKS.new_withheld)

    def test_score_is_row_independent(self, fitted):
        """A history scores the same alone as in a batch (no batch statistics leak between users)."""
        together = fitted.score(BLOCKS.new_history)
        alone = fitted.score(BLOCKS.new_history.take(np.array([5])))
        torch.testing.assert_close(alone[0], together[5], rtol=1e-5, atol=1e-5)

    def test_empty_history_scores_without_error(self, fitted):
        scores = fitted.score(Sequences.from_lists([[], [1, 2]]))
        assert scores.shape == (2, N_ITEMS + 1) and torch.isfinite(scores[:, 1:]).all()

    def test_padding_and_unknown_items_are_ignored(self, fitted):
        clean = Sequences.from_lists([[1, 2, 3]], [[LIKE, LOVE, DISLIKE]])
        noisy = Sequences.from_lists([[0, 1, N_ITEMS + 7, 2, 3]], [[LIKE, LIKE, LOVE, LOVE, DISLIKE]])
        torch.testing.assert_close(fitted.score(noisy), fitted.score(clean))

    def test_same_seed_same_scores(self, fitted):
        again = self.make_model(seed=0).fit(BLOCKS.dataset, BLOCKS.train)
        assert torch.equal(again.score(BLOCKS.train), fitted.score(BLOCKS.train))

    def test_config_and_state_rebuild_the_same_scores(self, fitted):
        """What nostrade.checkpoint saves of a model: plain values and tensors, readable with weights_only."""
        buffer = io.BytesIO()
        torch.save({"config": fitted.config(), "state": fitted.state_dict()}, buffer)
        buffer.seek(0)
        saved = torch.load(buffer, weights_only=True)
        assert all(torch.is_tensor(t) for t in saved["state"].values())
        loaded = self.rebuild(type(fitted), saved["config"], saved["state"])
        for history in (BLOCKS.new_history, Sequences.from_lists([[1, 2, 3], []], [[LIKE, DISLIKE, LOVE], []])):
            assert torch.equal(loaded.score(history), fitted.score(history))
