"""SASRec behind the models' fit/score interface (nostrade.sasrec_recommender)."""
import pytest
import torch
from model_contract import one_torch_thread  # noqa: F401 (autouse)

from nostrade.sasrec_net import SASRec, SASRecConfig
from nostrade.sasrec_recommender import SASRecRecommender, item2vec_init
from nostrade.sequences import Sequences


def test_item2vec_init_replaces_the_item_table_only():
    cfg = SASRecConfig(n_items=5, max_len=4, d_model=8, n_heads=2, n_layers=1)
    train = Sequences.from_lists([[1, 2, 3], [1, 2], [2, 3], [4, 5], [4, 5]])
    state = item2vec_init(cfg, seed=0, train=train)
    torch.manual_seed(0)
    fresh = SASRec(cfg).state_dict()
    assert not torch.equal(state["item_emb.weight"], fresh["item_emb.weight"])
    assert torch.equal(state["item_emb.weight"][0], torch.zeros(8))
    assert torch.allclose(state["item_emb.weight"].std(), fresh["item_emb.weight"].std(), rtol=0.5)
    assert all(torch.equal(v, fresh[k]) for k, v in state.items() if k != "item_emb.weight")


def test_options_are_the_config_fields():
    model = SASRecRecommender(seed=3, d_model=16, epochs=2)
    assert model.model_options == {"d_model": 16} and model.train_cfg.epochs == 2 and model.train_cfg.seed == 3
    with pytest.raises(ValueError, match="unknown options"):
        SASRecRecommender(d_modle=16)
    with pytest.raises(ValueError, match="init"):
        SASRecRecommender(init="glove")
