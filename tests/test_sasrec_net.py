import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from nostrade.dataset import Dataset
from nostrade.evaluate import rank_cases
from nostrade.sasrec_net import (FEATURE_BUFFERS, FEATURE_MODULES, HEAD_FIELDS, SASRec, SASRecConfig, canonical_orderings,
                            trim_left_padding)
from nostrade.sequences import Sequences
from nostrade.split import EvalCases, leave_one_out
from nostrade.sasrec_training import TrainConfig, fit_feature_shift, train_sasrec


def small_model(**overrides) -> SASRec:
    torch.manual_seed(0)
    cfg = dict(n_items=30, n_time_bins=4, max_len=8, d_model=16, n_heads=2, n_layers=2, dropout=0.0)
    return SASRec(SASRecConfig(**{**cfg, **overrides})).eval()


def left_padded_batch():
    iid = torch.tensor([[0, 0, 0, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8], [0] * 7 + [3]])
    feedback = torch.where(iid > 0, 2, 0)
    time_bin = torch.where(iid > 0, 1, 0)
    return iid, feedback, time_bin


def test_shapes_and_tied_item_embedding():
    model = small_model()
    iid, feedback, time_bin = left_padded_batch()
    hidden = model(iid, feedback, time_bin)
    assert hidden.shape == (3, 8, 16) and torch.isfinite(hidden).all()
    scores = model.logits(model.last_hidden(iid, feedback, time_bin))
    assert scores.shape == (3, 31)
    torch.testing.assert_close(scores, hidden[:, -1] @ model.item_emb.weight.T)


def test_attention_is_causal():
    model = small_model()
    iid, feedback, time_bin = left_padded_batch()
    changed = iid.clone()
    changed[1, -1] = 20
    before, after = model(iid, feedback, time_bin), model(changed, feedback, time_bin)
    torch.testing.assert_close(before[1, :-1], after[1, :-1])
    assert not torch.allclose(before[1, -1], after[1, -1])


def test_padding_keys_are_masked_and_trimming_changes_nothing():
    model = small_model()
    iid, feedback, time_bin = left_padded_batch()
    before = model(iid, feedback, time_bin)
    with torch.no_grad():
        model.pos_emb.weight[:3] += 5.0  # the embeddings of row 0's three padding positions
    after = model(iid, feedback, time_bin)
    torch.testing.assert_close(before[0, 3:], after[0, 3:])
    assert not torch.allclose(before[1], after[1])  # row 1 has real events at those positions
    short = torch.tensor([[0, 0, 4, 5], [0, 0, 0, 6]])
    fb, tb = torch.where(short > 0, 2, 0), torch.where(short > 0, 1, 0)
    trimmed = trim_left_padding(short, fb, tb)
    assert trimmed[0].shape == (2, 2)
    torch.testing.assert_close(model(short, fb, tb)[:, -2:], model(*trimmed))


@pytest.mark.parametrize("switch, field", [("use_feedback", 1), ("use_time", 2)])
def test_context_embeddings_can_be_switched_off(switch, field):
    iid, feedback, time_bin = left_padded_batch()
    inputs = [iid, feedback, time_bin]
    changed = list(inputs)
    changed[field] = torch.where(iid > 0, 3, 0)  # another feedback (Love) / time bin (3)
    on, off = small_model(), small_model(**{switch: False})
    assert not torch.allclose(on(*inputs), on(*changed))
    torch.testing.assert_close(off(*inputs), off(*changed))


def test_scorer_keeps_row_order_and_matches_the_last_hidden_state():
    model = small_model()
    history = Sequences.from_lists([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [4], [7, 8, 9]], [[2] * 10, [3], [1, 2, 3]])
    scores = model.score(history, batch_size=2)
    for row in range(3):
        one = [torch.from_numpy(a) for a in history.take([row]).padded(model.cfg.max_len)]
        torch.testing.assert_close(scores[row], model.logits(model.last_hidden(*one))[0])


def block_dataset(n_blocks=4, block_size=6, users_per_block=40, seed=0) -> Dataset:
    """Users of block b watch the items of block b in a random order: each test target is the one item of the
    user's block missing from their history, so a model that learned the blocks ranks it first."""
    rng = np.random.default_rng(seed)
    lists = [list(rng.permutation(block_size) + 1 + b * block_size)
             for b in range(n_blocks) for _ in range(users_per_block)]
    n_items = n_blocks * block_size
    items = pd.DataFrame({"iid": np.arange(1, n_items + 1), "item_id": np.arange(1, n_items + 1)})
    meta = {"source": "synthetic-blocks", "synthetic": True, "iid_map_sha256": "blocks", "time_bins": {"n_bins": 1}}
    return Dataset(items, Sequences.from_lists(lists), np.arange(len(lists)), meta)


def test_withheld_block_item_comes_back_first():
    dataset = block_dataset()
    split = leave_one_out(dataset.sequences)
    model_cfg = SASRecConfig(n_items=dataset.n_items, max_len=8, d_model=32, dropout=0.0)
    train_cfg = TrainConfig(epochs=40, batch_size=32, lr=5e-3, warmup=5, patience=40, eval_every=10, progress=False,
                            num_threads=1)
    result = train_sasrec(dataset, model_cfg, train_cfg, split=split)
    ranks = rank_cases(result.model.score, split.test, dataset.n_items)
    assert (ranks == 1).all(), f"ranks of the withheld items: {np.bincount(ranks)}"


@pytest.mark.parametrize("permutations", [1, 4])  # 1: the default (nostrade.sasrec_net.ORDERINGS)
def test_a_set_model_scores_the_same_set_the_same_whatever_its_order(permutations):
    model = SASRec(SASRecConfig(n_items=30, max_len=8, d_model=16, n_heads=2, n_layers=1, use_position=False,
                                permutations=permutations)).eval()
    events = [(3, 2), (17, 1), (9, 3), (25, 2), (4, 2)]
    orders = [events, events[::-1], sorted(events), events[2:] + events[:2]]
    scores = model.score(Sequences.from_lists([[i for i, _ in o] for o in orders], [[f for _, f in o] for o in orders]))
    for row in scores[1:]:
        torch.testing.assert_close(row, scores[0])
    orderings = canonical_orderings(Sequences.from_lists([[i for i, _ in events]]), 4)
    assert orderings.n_users == 4 and len({tuple(orderings.take([p]).iid) for p in range(4)}) > 1


def test_canonical_orderings_of_a_batch_are_each_history_alone_empty_ones_included():
    lists = [[3, 17, 9], [], [25, 4, 3, 8], [], [11]]
    batch = canonical_orderings(Sequences.from_lists(lists), 2)
    for u, items in enumerate(lists):
        alone = canonical_orderings(Sequences.from_lists([items]), 2)
        for p in range(2):
            assert np.array_equal(batch.take([2 * u + p]).iid, alone.take([p]).iid)


def test_a_set_model_has_no_position_embedding_and_defaults_come_from_the_data():
    assert SASRecConfig(n_items=5).for_order(False).use_position is False
    assert SASRecConfig(n_items=5).for_order(False).permutations > 0
    assert SASRecConfig(n_items=5).for_order(True).permutations == 0
    assert SASRecConfig(n_items=5, use_position=True).for_order(False).use_position is True
    assert SASRec(SASRecConfig(n_items=5, use_position=False)).pos_emb is None


# ---- use_item_features ------------------------------------------------------------------------------------------

def featured_blocks(cold_iid: int, features_as: str = "fallback", **overrides):
    """The contract's block data with every event of ``cold_iid`` taken out of training: its id is never trained."""
    from model_contract import BLOCKS
    train = BLOCKS.train.select(BLOCKS.train.iid != cold_iid)
    cfg = SASRecConfig(n_items=BLOCKS.dataset.n_items, max_len=8, d_model=32, n_heads=2, n_layers=1, dropout=0.0,
                       **{"use_item_features": True, "features_as": features_as, "id_dropout": 0.2, **overrides})
    split = dataclasses.replace(leave_one_out(BLOCKS.dataset.sequences), train=train)
    result = train_sasrec(BLOCKS.dataset, cfg, TrainConfig(epochs=40, lr=1e-2, batch_size=16, warmup=5, patience=40,
                                                           weight_decay=0.0, num_threads=1, progress=False,
                                                           feature_epochs=20),
                          split=split)
    return BLOCKS, result.model


@pytest.mark.parametrize("features_as", ["fallback", "sum"])
def test_a_title_never_trained_is_scored_from_its_features(features_as):
    cold = 9  # block 1 (iids 7..12)
    blocks, model = featured_blocks(cold, features_as)
    assert not model.has_id[cold] and model.has_id[1:].sum() == blocks.dataset.n_items - 1
    others = [i for i in range(7, 13) if i != cold]
    scores = model.score(Sequences.from_lists([others]))
    assert torch.isfinite(scores[0, 1:]).all()
    unseen = [i for i in range(1, blocks.dataset.n_items + 1) if i not in others]
    assert unseen[int(scores[0, unseen].argmax())] == cold  # its genre's block, though its id never trained
    # its vector is its feature part alone: what title_vectors gives for its catalogue row
    table = torch.from_numpy(model.item_vectors())
    torch.testing.assert_close(table[cold], model.title_vectors(blocks.dataset.items.iloc[[cold - 1]])[0])
    extra = model.score(Sequences.from_lists([others]), table=model.served_table(blocks.dataset.items.iloc[[cold - 1]]))
    torch.testing.assert_close(extra[0, -1], scores[0, cold])


def test_fallback_features_leave_the_titles_with_an_id_as_the_model_without_features():
    """The "fallback" model is the plain model (same seed), frozen, plus a feature part: every title with an id, and
    every history of such titles, scores exactly as without features; only the titles without one gain a score."""
    cold = 9
    blocks, featured = featured_blocks(cold)
    _, plain = featured_blocks(cold, use_item_features=False)
    for name, weights in plain.state_dict().items():
        torch.testing.assert_close(featured.state_dict()[name], weights)
    histories = Sequences.from_lists([[1, 2, 3], [7, 8, 10], [13, 14]])
    warm = np.flatnonzero(featured.has_id.numpy())
    torch.testing.assert_close(featured.score(histories)[:, warm], plain.score(histories)[:, warm])
    added = {k.split(".")[0] for k in featured.state_dict()} - {k.split(".")[0] for k in plain.state_dict()}
    assert {"genre_emb", "has_id"} <= added <= {*FEATURE_MODULES, *FEATURE_BUFFERS}
    assert all(p.requires_grad for p in featured.parameters())  # unfrozen again, e.g. for fine-tuning


def test_fallback_fine_tunes_from_a_model_with_a_feature_part():
    """train_sasrec from a "fallback" model's weights (nostrade.finetune): the plain part trains on from them and
    the feature part is fitted again, starting from the saved one."""
    blocks, model = featured_blocks(9)
    split = dataclasses.replace(leave_one_out(blocks.dataset.sequences), train=blocks.train)
    again = train_sasrec(blocks.dataset, model.cfg, TrainConfig(epochs=1, warmup=1, feature_epochs=1, num_threads=1,
                                                                progress=False),
                         split=split, init_state=model.state_dict()).model
    assert again.cfg.features_as == "fallback" and bool(again.has_id[9])  # its events are in this training part


def with_shift(model: SASRec, shift: float) -> SASRec:
    return SASRec.from_state({**model.config(), "feature_shift": shift}, model.state_dict())


def test_feature_shift_moves_only_the_titles_scored_from_features_alone():
    blocks, model = featured_blocks(9)
    histories, more = Sequences.from_lists([[7, 8, 11], [1, 2]]), blocks.dataset.items.iloc[[0, 5]]
    before, after = with_shift(model, 0.0), with_shift(model, 1.5)
    scored = lambda model: model.score(histories, table=model.served_table(more))
    moved = scored(after) - scored(before)
    expected = torch.zeros(moved.shape[1])
    expected[[9, -2, -1]] = 1.5  # the title without an id, and the two more titles after the vocabulary
    torch.testing.assert_close(moved, expected.expand_as(moved))


def test_the_fitted_shift_is_the_best_on_the_cases_and_else_0():
    """fit_feature_shift: where the title without an id (9) outranks the cases' targets, a negative shift that puts it
    under them, no lower than the floor; where it is their target and first already, no shift (every shift from 0 up
    is as good)."""
    blocks, model = featured_blocks(9)
    model, history = with_shift(model, 0.0), [7, 8, 11, 12]
    cases = lambda target: EvalCases(np.array([0]), Sequences.from_lists([history]), np.array([target]), np.array([2]))
    rank_of = lambda m, target: rank_cases(m.score, cases(target), blocks.dataset.n_items)[0]
    assert rank_of(model, 10) > 1  # 9 above it
    shift = fit_feature_shift(model, cases(10), blocks.dataset.n_items, lowest=-3.0)
    assert shift < 0 and rank_of(with_shift(model, shift), 10) == 1
    floored = fit_feature_shift(model, cases(10), blocks.dataset.n_items, lowest=-0.01)  # not that far down
    assert shift < floored < 0 and rank_of(with_shift(model, floored), 10) > 1
    assert rank_of(model, 9) == 1 and fit_feature_shift(model, cases(9), blocks.dataset.n_items, lowest=-3.0) == 0.0
    model.has_id[1:] = True  # every title has an id: nothing to shift
    assert fit_feature_shift(model, cases(10), blocks.dataset.n_items, lowest=-3.0) == 0.0


def test_a_features_config_saved_before_fallback_existed_loads_as_sum():
    _, model = featured_blocks(9, "sum")
    config = {k: v for k, v in model.config().items() if k != "features_as"}
    loaded = SASRec.from_state(config, model.state_dict())
    assert loaded.cfg.features_as == "sum"
    torch.testing.assert_close(loaded.item_table(), model.item_table())


def test_an_unknown_features_as_is_refused():
    with pytest.raises(ValueError, match="features_as"):
        small_model(use_item_features=True, features_as="concat", item_features={
            "genres": ["a"], "max_genres": 1, "types": [], "edges": {}, "scale": {}})


def test_features_off_leaves_weights_and_config_as_before():
    model = small_model()
    assert not [k for k in model.state_dict() if k.startswith(("genre", "field", "has_id"))]
    assert "use_item_features" not in model.config() and "item_features" not in model.config()
    with pytest.raises(ValueError, match="encoding"):
        small_model(use_item_features=True)


# ---- the feedback head: P(Like or Love | history, next title) -------------------------------------------------

def test_head_off_leaves_weights_as_before_and_on_adds_the_head():
    plain, head = small_model(feedback_head=False), small_model()
    assert "like_proj.weight" not in plain.state_dict() and plain.config()["feedback_head"] is False
    assert {k for k in head.state_dict()} - {k for k in plain.state_dict()} == {"like_proj.weight", "like_bias.weight"}
    for name, value in plain.state_dict().items():  # built last: the rest draws the same initial values
        torch.testing.assert_close(head.state_dict()[name], value)
    again = SASRec.from_state(head.config(), head.state_dict())
    assert again.cfg.feedback_head and again.config() == head.config()
    old = {k: v for k, v in plain.config().items() if k not in HEAD_FIELDS}  # a config saved before the head
    assert SASRec.from_state(old, plain.state_dict()).cfg.feedback_head is False


def test_scores_add_the_weighted_log_probability_of_liking_each_title():
    model = small_model(feedback_head=True)
    with torch.no_grad():
        model.like_bias.weight.normal_()
    history = Sequences.from_lists([[1, 2, 3], [4, 5]], [[2, 1, 3], [3, 3]])
    logits = model.score(history)
    one = [torch.from_numpy(a) for a in history.padded(model.cfg.max_len)]
    hidden = model.last_hidden(*one)
    torch.testing.assert_close(logits, model.logits(hidden))  # like_weight 0: the next-item logits alone
    model.cfg = dataclasses.replace(model.cfg, like_weight=2.0)
    expected = logits + 2.0 * torch.nn.functional.logsigmoid(model.like_logits(hidden, model.item_table()))
    torch.testing.assert_close(model.score(history), expected)
    items = torch.tensor([3, 7])
    torch.testing.assert_close(model.like_logits(hidden, model.item_table(), items),
                               model.like_logits(hidden, model.item_table())[[0, 1], items])


def feeling_dataset() -> Dataset:
    """block_dataset where every even title is always Disliked and every odd one Liked."""
    blocks = block_dataset()
    feedback = np.where(blocks.sequences.iid % 2 == 0, 1, 2)
    return dataclasses.replace(blocks, sequences=dataclasses.replace(blocks.sequences, feedback=feedback))


def test_the_head_learns_who_dislikes_what_and_the_fitted_weight_keeps_dislikes_down():
    dataset = feeling_dataset()
    split = leave_one_out(dataset.sequences)
    model_cfg = SASRecConfig(n_items=dataset.n_items, max_len=8, d_model=32, dropout=0.0, feedback_head=True)
    train_cfg = TrainConfig(epochs=30, batch_size=32, lr=5e-3, warmup=5, patience=30, eval_every=10, progress=False,
                            num_threads=1)
    model = train_sasrec(dataset, model_cfg, train_cfg, split=split).model
    hidden = model.last_hidden(*(torch.from_numpy(a) for a in split.test.history.padded(8)))
    like = torch.sigmoid(model.like_logits(hidden, model.item_table()))[:, 1:]
    disliked_titles = torch.arange(1, dataset.n_items + 1) % 2 == 0
    assert like[:, disliked_titles].mean() < 0.2 < 0.8 < like[:, ~disliked_titles].mean()
    # without the head's term the two unseen titles of a block tie near the top, liked or not: the fitted weight
    # is above 0, and the test's disliked targets rank below its liked ones
    assert model.cfg.like_weight > 0
    ranks = rank_cases(model.score, split.test, dataset.n_items)
    disliked_target = split.test.target_feedback == 1
    assert ranks[~disliked_target].mean() < ranks[disliked_target].mean()
