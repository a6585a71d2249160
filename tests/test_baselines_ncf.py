import numpy as np
import pytest
import torch
from model_contract import BLOCKS, N_ITEMS, ModelContract, one_torch_thread  # noqa: F401 (autouse)

from nostrade.baselines.interactions import interaction_matrix
from nostrade.baselines.ncf import NCF, NCFConfig, NeuMF, sample_negatives, seen_keys
from nostrade.sequences import Sequences


class TestNCF(ModelContract):
    def make_model(self, seed):
        return NCF(gmf_dim=8, mlp_layers=(16, 8), epochs=30, patience=30, batch_size=64, lr=1e-2, seed=seed,
                   device="cpu")


def test_negatives_are_never_seen_items_and_are_seeded():
    user_items = interaction_matrix(BLOCKS.train, N_ITEMS)
    keys, n_cols = seen_keys(user_items), user_items.shape[1]
    users = np.repeat(np.arange(BLOCKS.train.n_users), 50)
    items = sample_negatives(keys, n_cols, users, np.random.default_rng(3))
    assert items.min() >= 1 and items.max() <= N_ITEMS
    assert not user_items[users, items].any()
    np.testing.assert_array_equal(items, sample_negatives(keys, n_cols, users, np.random.default_rng(3)))
    assert len(np.unique(items[users == 0])) == N_ITEMS - 5  # every unseen item gets drawn


def test_pair_logits_are_the_catalogue_logits_columns():
    torch.manual_seed(0)
    net = NeuMF(N_ITEMS, gmf_dim=4, mlp_layers=(8, 6, 4))
    user_gmf, user_mlp = torch.randn(3, 4), torch.randn(3, 4)
    every_item = net.logits(user_gmf, user_mlp, torch.arange(N_ITEMS + 1)[None])
    iid = torch.tensor([[5], [0], [24]])
    torch.testing.assert_close(net.logits(user_gmf, user_mlp, iid), every_item.gather(1, iid))


def test_early_stopping_keeps_the_best_validation_epoch():
    model = NCF(gmf_dim=8, mlp_layers=(16, 8), epochs=12, patience=2, batch_size=64, lr=1e-2, seed=0, device="cpu")
    model.fit(BLOCKS.dataset, BLOCKS.train)
    ndcgs = [h["valid_ndcg@10"] for h in model.history]
    assert model.best_valid_ndcg == max(ndcgs) and ndcgs[model.best_epoch - 1] == max(ndcgs)
    assert len(ndcgs) == 12 or len(ndcgs) - model.best_epoch == 2


def test_an_item_in_the_history_scores_higher_after_fold_in():
    model = NCF(gmf_dim=8, mlp_layers=(16, 8), epochs=5, batch_size=64, lr=1e-2, seed=0, device="cpu")
    model.fit(BLOCKS.dataset, BLOCKS.train)
    empty, one = model.score(Sequences.from_lists([[], [13]]))
    assert (one - empty)[13] > 0 and (one - empty)[13:19].mean() > (one - empty)[1:7].mean()


@pytest.mark.parametrize("options", [{"mlp_layers": (15, 8)}, {"mlp_layers": (16,)}, {"negatives": 0}])
def test_bad_config_is_a_clear_error(options):
    with pytest.raises(ValueError, match="mlp_layers|negatives"):
        NCFConfig(**options)
