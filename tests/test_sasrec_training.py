"""The SASRec training loop (nostrade.sasrec_training): losses, repeatability, early stopping, resume."""
import argparse
import dataclasses
import math
import os

import pytest
import torch

from nostrade import sasrec_training
from nostrade.dataset import load_dataset
from nostrade.sasrec_net import SASRec, SASRecConfig
from nostrade.sasrec_training import (TrainConfig, last_checkpoint_path, sampling_distribution, sequence_loss,
                                      train_sasrec)
from nostrade.sequences import DISLIKE, LIKE, LOVE, Sequences
from nostrade.train import add_dataclass_flags

TINY_MODEL = dict(max_len=20, d_model=16, n_heads=2, n_layers=1, dropout=0.1)
TINY_TRAIN = dict(epochs=4, batch_size=32, lr=3e-3, warmup=5, patience=10, progress=False, num_threads=1)


@pytest.fixture(scope="module")
def dataset(processed_sample):
    return load_dataset(processed_sample)


def configs(dataset, **train_overrides):
    model_cfg = SASRecConfig(n_items=dataset.n_items, n_time_bins=dataset.n_time_bins, **TINY_MODEL)
    return model_cfg, TrainConfig(**{**TINY_TRAIN, **train_overrides})


@pytest.mark.parametrize("loss", ["ce", "sampled", "bce", "bpr"])
def test_loss_falls_and_validation_is_evaluated(dataset, loss):
    result = train_sasrec(dataset, *configs(dataset, loss=loss, n_negatives=8))
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0], losses
    assert len(result.history) == 4 and all("valid_ndcg@10" in h for h in result.history)
    assert 1 <= result.best_epoch <= 4 and result.best_metrics["n_cases"] == dataset.sequences.n_users
    assert 0 < result.seconds_to_best <= result.seconds_total


def test_cpu_training_is_repeatable(dataset):
    first = train_sasrec(dataset, *configs(dataset, epochs=2))
    second = train_sasrec(dataset, *configs(dataset, epochs=2))
    strip = lambda history: [{k: v for k, v in h.items() if not k.endswith("seconds")} for h in history]
    assert strip(first.history) == strip(second.history)


def test_max_steps_cuts_the_epoch_and_the_record_times_training_and_evaluation(dataset):
    full = train_sasrec(dataset, *configs(dataset, epochs=1)).history[0]
    cut = train_sasrec(dataset, *configs(dataset, epochs=1, max_steps=2)).history[0]
    assert cut["steps"] == 2 < full["steps"] == full["epoch_steps"] == cut["epoch_steps"]
    assert 0 < cut["train_seconds"] < full["train_seconds"] and full["eval_seconds"] > 0
    assert full["seconds"] >= full["train_seconds"] + full["eval_seconds"]


def test_early_stopping_after_patience_evaluations_without_gain(dataset):
    result = train_sasrec(dataset, *configs(dataset, lr=0.0, warmup=1, epochs=10, patience=2))
    assert result.best_epoch == 1 and result.epochs_run == 3


def test_on_epoch_gets_every_record_and_the_most_epochs(dataset):
    seen = []
    result = train_sasrec(dataset, *configs(dataset, lr=0.0, warmup=1, epochs=10, patience=2),
                          on_epoch=lambda record, epochs: seen.append((record, epochs)))
    assert seen == [(h, 10) for h in result.history] and len(seen) == 3  # stopped early, after 3 of 10


def test_threads_default_to_nostrade_threads_else_every_core(monkeypatch):
    monkeypatch.setenv("NOSTRADE_THREADS", "3")
    parser = argparse.ArgumentParser()
    add_dataclass_flags(parser, TrainConfig)
    assert TrainConfig().num_threads == 3 and parser.parse_args([]).num_threads == 3
    monkeypatch.delenv("NOSTRADE_THREADS")
    assert TrainConfig().num_threads == os.cpu_count()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(os.cpu_count()))  # torchrun: one process per core
    assert TrainConfig().num_threads == 1


def scored_losses(loss, feedback):
    """Loss of one position whose hidden state points at the target item, as the target's score grows (the
    next-item loss alone: no feedback head)."""
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=10, d_model=8, feedback_head=False))
    target = torch.tensor([[3]])
    cfg = TrainConfig(loss=loss, n_negatives=4, love_weight=2.0, dislike_weight=1.0)
    out = []
    for scale in (0.5, 4.0):
        hidden = (scale * model.item_emb.weight[3] / model.item_emb.weight[3].norm()).view(1, 1, -1)
        out.append(sequence_loss(model, hidden, target, torch.tensor([[feedback]]), cfg,
                                 torch.Generator().manual_seed(0)).item())
    return out


@pytest.mark.parametrize("loss", ["ce", "sampled", "bce", "bpr"])
def test_feedback_weighting_pushes_a_disliked_next_item_away(loss):
    liked_low, liked_high = scored_losses(loss, LIKE)
    disliked_low, disliked_high = scored_losses(loss, DISLIKE)
    assert liked_high < liked_low  # a liked next item: a higher score is better
    assert disliked_high > disliked_low  # a disliked one: a higher score is worse
    loved_low, _ = scored_losses(loss, LOVE)
    assert loved_low == pytest.approx(2.0 * liked_low)


def test_sampled_loss_is_log_q_corrected_with_negatives_shared_by_the_batch(monkeypatch):
    """Two positions, 3 items, 4 negatives drawn once: the loss equals the sampled softmax computed by hand,
    each negative's logit less log(4 q), the target's kept, a drawn target masked at its own position."""
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=3, d_model=4, feedback_head=False))  # the next-item loss alone
    hidden = torch.randn(1, 2, 4)
    target, feedback = torch.tensor([[1, 3]]), torch.tensor([[LIKE, LIKE]])
    sampling = torch.tensor([0.0, 0.5, 0.3, 0.2], dtype=torch.float64)
    cfg = TrainConfig(loss="sampled", shared_negatives=4)
    draws, real_multinomial = [], torch.multinomial

    def recorded_multinomial(*args, **kwargs):
        draws.append(real_multinomial(*args, **kwargs))
        return draws[-1]

    monkeypatch.setattr(torch, "multinomial", recorded_multinomial)
    loss = sequence_loss(model, hidden, target, feedback, cfg, torch.Generator().manual_seed(7), sampling)
    assert len(draws) == 1 and draws[0].shape == (4,)  # one draw for the whole batch
    negatives = real_multinomial(sampling, 4, replacement=True, generator=torch.Generator().manual_seed(7))
    assert torch.equal(draws[0], negatives) and set(target.flatten().tolist()) & set(negatives.tolist())

    emb, h = model.item_emb.weight.detach().double(), hidden[0].detach().double()
    expected = []
    for n, t in enumerate(target[0].tolist()):
        kept = [j for j in negatives.tolist() if j != t]
        corrected = [float(h[n] @ emb[j]) - math.log(4 * float(sampling[j])) for j in kept]
        positive = float(h[n] @ emb[t])
        expected.append(-(positive - math.log(math.exp(positive) + sum(math.exp(c) for c in corrected))))
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-5)


def test_sampling_mixes_uniform_and_popularity():
    train = Sequences.from_lists([[1, 1, 1, 2]])
    q = sampling_distribution(train, 3, uniform_share=0.5).numpy()
    assert q == pytest.approx([0.0, 0.5 / 3 + 0.5 * 0.75, 0.5 / 3 + 0.5 * 0.25, 0.5 / 3])


def test_resume_after_a_kill_continues_exactly(dataset, tmp_path, monkeypatch):
    uninterrupted = train_sasrec(dataset, *configs(dataset), checkpoint_path=tmp_path / "full.pt")

    calls = {"n": 0}
    real_evaluate = sasrec_training.evaluate

    def evaluate_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during epoch 3: the last checkpoint holds epoch 2
        return real_evaluate(*args, **kwargs)

    path = tmp_path / "killed.pt"
    monkeypatch.setattr(sasrec_training, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_sasrec(dataset, *configs(dataset), checkpoint_path=path)
    monkeypatch.setattr(sasrec_training, "evaluate", real_evaluate)
    assert torch.load(last_checkpoint_path(path), weights_only=True)["training_state"]["epoch"] == 2

    resumed = train_sasrec(dataset, *configs(dataset, resume=True), checkpoint_path=path)
    strip = lambda history: [{k: v for k, v in h.items() if not k.endswith("seconds")} for h in history]
    assert strip(resumed.history) == strip(uninterrupted.history)
    assert resumed.best_epoch == uninterrupted.best_epoch
    for a, b in zip(resumed.model.state_dict().values(), uninterrupted.model.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_the_data_order_chooses_the_defaults_and_explicit_flags_win(dataset):
    timed = train_sasrec(dataset, *configs(dataset, epochs=1))
    assert timed.model_cfg.use_position and timed.model_cfg.permutations == 0 and timed.train_cfg.permute is False
    order_free = dataclasses.replace(dataset, meta={**dataset.meta, "order_is_time": False})
    result = train_sasrec(order_free, *configs(order_free, epochs=1))
    assert result.model_cfg.use_position is False and result.model_cfg.permutations > 0
    assert result.train_cfg.permute is True and result.model.pos_emb is None
    model_cfg, train_cfg = configs(order_free, epochs=1, permute=False)
    kept = train_sasrec(order_free, dataclasses.replace(model_cfg, use_position=True), train_cfg)
    assert kept.model_cfg.use_position and kept.train_cfg.permute is False


def test_permuted_training_cannot_learn_the_file_order(dataset):
    """The control: where the file order is an artefact, a permuted history carries none of it."""
    import numpy as np

    from nostrade.split import permuted
    by_id = dataset.sequences.events(np.lexsort((dataset.sequences.iid, dataset.sequences.row_of_event())),
                                     dataset.sequences.offsets)  # like the Kaggle file: id order per user

    def ascending(seqs):
        rows = seqs.row_of_event()
        return (seqs.iid[1:] > seqs.iid[:-1])[rows[1:] == rows[:-1]].mean()

    assert ascending(by_id) == 1.0 and 0.4 < ascending(permuted(by_id, seed=3)) < 0.6
    assert sorted(permuted(by_id, seed=3).take([5]).iid) == sorted(by_id.take([5]).iid)


def test_the_dislike_margin_pushes_a_disliked_next_title_below_the_rows_liked_ones():
    table = torch.eye(4)
    target = torch.tensor([[1, 2, 3]])
    feedback = torch.tensor([[LIKE, DISLIKE, LOVE]])
    hidden = torch.zeros(1, 3, 4, requires_grad=True)
    loss = sasrec_training.below_liked(hidden, target, feedback, table)
    assert loss.item() == pytest.approx(math.log(2.0))  # every score 0: softplus(0)
    loss.backward()
    # the position whose next title (2) is disliked: its score of 2 goes down, of the liked 1 and 3 up
    assert hidden.grad[0, 1, 2] > 0 and hidden.grad[0, 1, 1] < 0 and hidden.grad[0, 1, 3] < 0
    assert hidden.grad[0, [0, 2]].abs().sum() == 0  # positions with a liked next title: untouched
    no_dislike = sasrec_training.below_liked(hidden, target, torch.full_like(feedback, LIKE), table)
    assert no_dislike.item() == 0.0
