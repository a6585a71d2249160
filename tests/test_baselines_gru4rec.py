import numpy as np
import torch
from model_contract import BLOCKS, N_ITEMS, ModelContract, one_torch_thread  # noqa: F401 (autouse)

from nostrade.baselines.gru4rec import GRU4Rec, right_padded
from nostrade.sequences import Sequences


class TestGRU4Rec(ModelContract):
    def make_model(self, seed):
        return GRU4Rec(dim=32, dropout=0.0, max_len=10, epochs=40, batch_size=16, lr=1e-2, seed=seed, device="cpu")


def test_right_padded_keeps_the_most_recent_events_left_aligned():
    iid, lengths = right_padded(Sequences.from_lists([[1, 2, 3, 4, 5], [6], []]), max_len=3)
    np.testing.assert_array_equal(iid.numpy(), [[3, 4, 5], [6, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(lengths.numpy(), [3, 1, 0])


def test_order_matters_and_only_the_last_max_len_events_count():
    model = GRU4Rec(dim=16, max_len=4, epochs=2, seed=0, device="cpu").fit(BLOCKS.dataset, BLOCKS.train)
    forward, backward = model.score(Sequences.from_lists([[1, 2, 3], [3, 2, 1]]))
    assert not torch.allclose(forward, backward)
    long, recent = model.score(Sequences.from_lists([[20, 21, 1, 2, 3, 4], [1, 2, 3, 4]]))
    torch.testing.assert_close(long, recent)


def test_empty_history_is_the_zero_state():
    model = GRU4Rec(dim=16, epochs=1, seed=0, device="cpu").fit(BLOCKS.dataset, BLOCKS.train)
    scores = model.score(Sequences.from_lists([[]]))
    assert torch.equal(scores, torch.zeros(1, N_ITEMS + 1))
