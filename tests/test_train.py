import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from nostrade import train
from nostrade.baselines.ease import EASE
from nostrade.checkpoint import load_checkpoint
from nostrade.dataset import load_dataset
from nostrade.model import SASRec, SASRecConfig
from nostrade.ranker import TwoStage
from nostrade.scoring import SERVED_ALPHAS
from nostrade.sequences import DISLIKE, LIKE, LOVE, Sequences
from nostrade.split import split_of
from nostrade.train import TrainConfig, last_checkpoint_path, sampling_distribution, sequence_loss, train_sasrec

TINY_MODEL = dict(max_len=20, d_model=16, n_heads=2, n_layers=1, dropout=0.1)
TINY_TRAIN = dict(epochs=4, batch_size=32, lr=3e-3, warmup=5, patience=10, progress=False, num_threads=1)
TINY_FLAGS = ["--max-len", "20", "--d-model", "16", "--n-layers", "1", "--batch-size", "32", "--lr", "3e-3",
              "--warmup", "5", "--num-threads", "1", "--no-progress"]


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
    train.add_dataclass_flags(parser, TrainConfig)
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
    real_evaluate = train.evaluate

    def evaluate_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during epoch 3: the last checkpoint holds epoch 2
        return real_evaluate(*args, **kwargs)

    path = tmp_path / "killed.pt"
    monkeypatch.setattr(train, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_sasrec(dataset, *configs(dataset), checkpoint_path=path)
    monkeypatch.setattr(train, "evaluate", real_evaluate)
    assert torch.load(last_checkpoint_path(path), weights_only=True)["training_state"]["epoch"] == 2

    resumed = train_sasrec(dataset, *configs(dataset, resume=True), checkpoint_path=path)
    strip = lambda history: [{k: v for k, v in h.items() if not k.endswith("seconds")} for h in history]
    assert strip(resumed.history) == strip(uninterrupted.history)
    assert resumed.best_epoch == uninterrupted.best_epoch
    for a, b in zip(resumed.model.state_dict().values(), uninterrupted.model.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_cli_writes_checkpoint_and_run_record(processed_sample, tmp_path, capsys):
    out, metrics = tmp_path / "sasrec.pt", tmp_path / "metrics.json"
    code = train.main(["--data", str(processed_sample), "--out", str(out), "--metrics", str(metrics),
                       "--model", "sasrec", "--epochs", "2", "--seed", "5", *TINY_FLAGS])
    assert code == 0
    record = json.loads(metrics.read_text())
    printed = capsys.readouterr().out
    assert f"delta {record['test']['delta_ndcg@10']:+.4f}" in printed  # and what delta means, in words:
    assert "delta = NDCG@10 of the held-out titles people liked minus" in printed
    assert f"of the {record['test']['next_disliked']['n_cases']} held-out titles they disliked" in printed
    meta = json.loads((processed_sample / "meta.json").read_text())
    assert record["iid_map_sha256"] == meta["iid_map_sha256"] and record["seed"] == 5
    assert record["model_config"]["d_model"] == 16 and record["train_config"]["epochs"] == 2
    assert record["epochs"] == 2 and record["wall_seconds"] > 0 and len(record["history"]) == 2
    assert set(record["test"]) == {"next_item", "next_liked", "next_disliked", "delta_ndcg@10"}
    loaded = load_checkpoint(out, expected_iid_map_sha256=meta["iid_map_sha256"])
    assert loaded.metrics["test"]["next_item"]["ndcg@10"] == record["test"]["next_item"]["ndcg@10"]
    assert record["model"] == "sasrec" and isinstance(loaded.model, SASRec) and record["auto"] is None


def test_cli_ease_fits_in_closed_form(ease_checkpoint, processed_anime):
    record = json.loads((ease_checkpoint.parent / "metrics.json").read_text())
    assert not load_dataset(processed_anime).order_is_time
    assert record["model"] == "ease" and record["model_config"]["l2"] == 150.0 and record["epochs"] == 0
    assert set(record["test"]) == {"next_item", "next_liked", "next_disliked", "delta_ndcg@10"}
    loaded = load_checkpoint(ease_checkpoint)
    assert isinstance(loaded.model, EASE) and loaded.metrics["valid"] == record["valid"]
    assert loaded.metrics["test"]["next_item"]["ndcg@10"] == record["test"]["next_item"]["ndcg@10"] > 0.1


def test_cli_auto_serves_the_best_candidate_by_served_validation(processed_sample, tmp_path, capsys):
    out, metrics = tmp_path / "auto.pt", tmp_path / "metrics.json"
    assert train.main(["--data", str(processed_sample), "--out", str(out), "--metrics", str(metrics),
                       "--candidates", "sasrec,ease", "--epochs", "2", *TINY_FLAGS]) == 0
    record = json.loads(metrics.read_text())
    auto = record["auto"]
    table = auto["candidates"]
    assert set(table) == {"sasrec", "ease"} and all(table[kind]["alpha"] in SERVED_ALPHAS for kind in table)
    assert auto["chosen"] == max(table, key=lambda kind: table[kind]["ndcg@10"]) == record["model"]
    dataset = load_dataset(processed_sample)
    loaded = load_checkpoint(out, expected_iid_map_sha256=dataset.iid_map_hash)
    assert loaded.model.kind == auto["chosen"] and loaded.metrics["auto"] == auto
    served = train.served_validation(loaded.model, dataset, split_of(dataset))
    assert served["ndcg@10"] == pytest.approx(table[auto["chosen"]]["ndcg@10"])
    # the settings chosen on validation are what predict serves by default
    assert loaded.metrics["served"] == {"alpha": served["alpha"], "dislike_weight": served["dislike_weight"]}
    assert f"auto chose {auto['chosen']}" in capsys.readouterr().out
    assert not train.last_checkpoint_path(out).exists()  # a candidate that may lose writes no resumable state


def test_auto_leaves_the_sequence_models_out_where_the_order_is_not_time(processed_anime):
    dataset = load_dataset(processed_anime)
    assert train.auto_generators(dataset) == ("als", "itemknn", "ease", "content", "popularity")
    timed = dataclasses.replace(dataset, meta={**dataset.meta, "order_is_time": True})
    assert train.auto_generators(timed) == train.GENERATORS
    assert train.auto_candidates(dataset) == ("ease", "ranker") and train.auto_candidates(timed) == train.AUTO_KINDS


def test_cli_model_ranker_fits_the_two_stage_ranker_on_the_training_part(ranker_checkpoint, processed_anime):
    record = json.loads((ranker_checkpoint.parent / "metrics.json").read_text())
    config = record["model_config"]
    assert record["model"] == "ranker" and config["generators"] == ["itemknn", "ease", "content", "popularity"]
    assert config["n_candidates"] == 50 and config["booster"].startswith("<") and "sha256" in config["booster"]
    loaded = load_checkpoint(ranker_checkpoint, expected_iid_map_sha256=load_dataset(processed_anime).iid_map_hash)
    assert isinstance(loaded.model, TwoStage) and loaded.metrics["valid"] == record["valid"]
    assert np.isnan(loaded.model.item_features).any()  # the catalogue's missing values came back as NaN
    assert loaded.metrics["test"]["next_item"]["ndcg@10"] == record["test"]["next_item"]["ndcg@10"] > 0.1


def test_cli_ranker_options_are_checked_before_any_fitting(processed_anime, tmp_path, capsys):
    out = tmp_path / "ranker.pt"
    for flags, fragment in ((["--generators", "ease,nope"], "generators"), (["--n-candidates", "0"], "n_candidates"),
                            (["--model", "auto", "--candidates", "ease,nope"], "--candidates")):
        assert train.main(["--data", str(processed_anime), "--out", str(out), "--model", "ranker", *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and fragment in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert train.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere" in err and "make_processed_data.py" in err
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--loss", "mse"])
    assert exit_info.value.code == 2


def test_cli_unwritable_out_exits_7_and_a_damaged_resume_checkpoint_exits_5(processed_anime, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "model.pt"
    assert train.main(["--data", str(processed_anime), "--out", str(out), "--metrics", str(tmp_path / "m.json"),
                       "--model", "ease"]) == 7
    assert capsys.readouterr().err == f"error: cannot write {out}: File exists\n"
    out = tmp_path / "sasrec.pt"
    last_checkpoint_path(out).write_bytes(b"")  # emptied by a failing disk
    assert train.main(["--data", str(processed_anime), "--out", str(out), "--model", "sasrec", "--resume",
                       "--metrics", str(tmp_path / "m.json"), *TINY_FLAGS]) == 5
    assert capsys.readouterr().err.startswith(f"error: {last_checkpoint_path(out)}: not a readable checkpoint")


def failure_report(stderr: str, tail: int = 1500) -> str:
    """The lines that carry a worker's actual error (torchrun's summary at the end names only the signal),
    then the tail."""
    causes = [line for line in stderr.splitlines() if any(w in line for w in ("terminate", "Error", "error"))]
    return "error lines:\n" + "\n".join(causes[:30]) + f"\n...\nlast {tail} characters:\n" + stderr[-tail:]


def test_failure_report_shows_the_error_lines_before_the_summary():
    stderr = "terminate called after throwing an instance of 'gloo::IoException'\n" + "x" * 5000 + "\nSignal 6"
    report = failure_report(stderr)
    assert report.index("gloo::IoException") < report.index("Signal 6")


def test_data_parallel_with_two_gloo_processes(processed_sample, tmp_path):
    """torchrun with 2 CPU processes trains the same kind of model as 1 process (not the same numbers:
    each process sees half the users per step and draws its own dropout)."""
    def args(name):
        return ["--data", str(processed_sample), "--out", str(tmp_path / f"{name}.pt"), "--model", "sasrec",
                "--metrics", str(tmp_path / f"{name}.json"), "--epochs", "4", *TINY_FLAGS]

    assert train.main(args("single")) == 0
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr", "127.0.0.1",
               "--nproc_per_node", "2", "-m", "nostrade.train", *args("double")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"})
    assert done.returncode == 0, failure_report(done.stderr)
    single, double = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("single", "double"))
    assert double["world_size"] == 2 and single["world_size"] == 1
    for record in (single, double):
        losses = [h["loss"] for h in record["history"]]
        assert losses[-1] < losses[0]
    assert double["history"][-1]["loss"] == pytest.approx(single["history"][-1]["loss"], rel=0.1)
    assert double["valid"]["ndcg@10"] == pytest.approx(single["valid"]["ndcg@10"], rel=0.5)


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
    loss = train.below_liked(hidden, target, feedback, table)
    assert loss.item() == pytest.approx(math.log(2.0))  # every score 0: softplus(0)
    loss.backward()
    # the position whose next title (2) is disliked: its score of 2 goes down, of the liked 1 and 3 up
    assert hidden.grad[0, 1, 2] > 0 and hidden.grad[0, 1, 1] < 0 and hidden.grad[0, 1, 3] < 0
    assert hidden.grad[0, [0, 2]].abs().sum() == 0  # positions with a liked next title: untouched
    no_dislike = train.below_liked(hidden, target, torch.full_like(feedback, LIKE), table)
    assert no_dislike.item() == 0.0
