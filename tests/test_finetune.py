import dataclasses
import errno
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nostrade import atomic, finetune as ft
from nostrade import checkpoint as checkpoint_module
from nostrade.baselines.ease import EASE
from nostrade.registry import load_checkpoint
from nostrade.dataset import Dataset, load_dataset, sha256_of
from nostrade.events import CLEARED, SAVED, EventLog
from nostrade.ranker import TwoStage
from nostrade.sasrec_net import SASRec
from nostrade.sequences import DISLIKE, LIKE, LOVE, Sequences
from nostrade.split import split_of
from nostrade.sasrec_training import TrainResult
from predict import Recommender

# ---------------------------------------------------------------------------------------------- merge_log


@pytest.fixture
def small():
    """Two training users (ids 5 and 9) over items iid 1..4 = anime 100, 200, 300, 400."""
    items = pd.DataFrame({"iid": [1, 2, 3, 4], "item_id": [100, 200, 300, 400]})
    seqs = Sequences.from_lists([[1, 2, 3], [4, 1]], [[2, 3, 2], [1, 2]])
    meta = {"iid_map_sha256": "x", "has_timestamps": False, "time_bins": {"scheme": "none", "n_bins": 1}}
    return Dataset(items, seqs, np.array([5, 9]), meta)


def log_frame(rows):
    """rows: (user_id, item_id, feedback_type, timestamp) in storage order."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "feedback_type", "timestamp"])
    return frame.assign(seq=np.arange(1, len(frame) + 1), event_id=[f"e{i}" for i in range(len(frame))],
                        session_id=None)


def as_lists(dataset: Dataset) -> dict:
    s = dataset.sequences
    return {int(u): (s.iid[a:b].tolist(), s.feedback[a:b].tolist())
            for u, a, b in zip(dataset.user_ids, s.offsets[:-1], s.offsets[1:])}


def test_new_users_become_new_sequences_in_time_order(small):
    events = log_frame([(42, 300, LOVE, 20.0), (42, 100, LIKE, 10.0), (42, 400, DISLIKE, 30.0)])
    merged = ft.merge_log(small, events)
    assert as_lists(merged.dataset) == {5: ([1, 2, 3], [2, 3, 2]), 9: ([4, 1], [1, 2]),
                                        42: ([1, 3, 4], [LIKE, LOVE, DISLIKE])}
    assert merged.counts["new_users"] == 1 and merged.counts["log_interactions_added"] == 3


def test_new_users_under_ordinary_ids_move_nobody_elses_held_out_events(processed_anime):
    """Issue: one new user inserted among the ids moved 870 of 890 users' validation targets (a random key per
    event position over the whole file), so a fine-tune was judged on answers the old model had trained on."""
    data = load_dataset(processed_anime)
    assert not set(range(5001, 5005)) & set(data.user_ids.tolist())  # ordinary ids, before every training user's
    titles = data.items["item_id"].to_numpy()[:6]
    events = log_frame([(5001 + u, int(a), LIKE, 1.0e9 + i) for u in range(4) for i, a in enumerate(titles)])
    merged = ft.merge_log(data, events).dataset
    before, after = split_of(data), split_of(merged)
    row_after = {int(u): r for r, u in enumerate(merged.user_ids)}
    for name in ("valid", "test", "test_disliked"):
        old, new = getattr(before, name), getattr(after, name)
        target_of = dict(zip(new.users.tolist(), new.target.tolist()))
        assert [target_of[row_after[int(data.user_ids[u])]] for u in old.users] == old.target.tolist()
    assert len(after.valid) == len(before.valid) + 4


def test_a_training_user_continues_and_the_latest_duplicate_wins(small):
    events = log_frame([(5, 100, LOVE, 1.0), (5, 400, LIKE, 2.0)])
    merged = ft.merge_log(small, events)
    assert as_lists(merged.dataset)[5] == ([2, 3, 1, 4], [3, 2, LOVE, LIKE])  # title 100 moved to its latest place
    assert merged.counts["training_users_extended"] == 1 and merged.counts["replaced_events"] == 1


def test_cleared_ratings_remove_titles_and_saves_are_not_ratings(small):
    events = log_frame([(42, 100, LIKE, 1.0), (42, 200, LOVE, 2.0), (42, 100, CLEARED, 3.0), (42, 300, SAVED, 4.0),
                        (9, 400, CLEARED, 5.0)])
    merged = ft.merge_log(small, events)
    lists = as_lists(merged.dataset)
    assert lists[42] == ([2], [LOVE])
    assert lists[9] == ([1], [2])  # the cleared training title is gone too
    assert merged.counts["rating_events"] == 4


def test_unknown_titles_are_skipped_and_counted(small):
    events = log_frame([(42, 100, LIKE, 1.0), (42, 777, LOVE, 2.0), (43, 777, LIKE, 3.0), (44, 888, LIKE, 4.0)])
    merged = ft.merge_log(small, events)
    assert merged.counts["unknown_title_events"] == 3 and merged.counts["unknown_titles"] == 2
    assert set(as_lists(merged.dataset)) == {5, 9, 42}  # 43 and 44 had nothing the model knows


def test_time_bins_follow_the_data_scheme_and_are_capped(small):
    month = 31 * 86400
    start = 1_598_918_400  # 2020-09-01
    seqs = dataclasses.replace(Sequences.from_lists([[1, 2]], [[2, 2]], [[1, 2]]),
                               timestamp=np.array([start, start + month], dtype=np.float64))
    data = Dataset(small.items, seqs, np.array([5]), {"iid_map_sha256": "x", "has_timestamps": True, "time_bins": {
        "scheme": "month", "n_bins": 2, "first_period": "2020-09"}})
    events = log_frame([(7, 300, LIKE, float(start + 5)), (7, 400, LOVE, float(start + 12 * month)),
                        (7, 100, LIKE, 5.0)])  # a timestamp from before the data: clipped to its start
    merged = ft.merge_log(data, events)
    seqs = merged.dataset.sequences
    user = list(merged.dataset.user_ids).index(7)
    got = seqs.time_bin[seqs.offsets[user]:seqs.offsets[user + 1]].tolist()
    assert seqs.iid[seqs.offsets[user]:seqs.offsets[user + 1]].tolist() == [1, 3, 4]
    assert got == [1, 1, 2]  # same first period as the data; later months share the last bin
    assert seqs.time_bin[:2].tolist() == [1, 2]  # training bins unchanged


# ---------------------------------------------------------------------------------------------- the loop


@pytest.fixture
def workspace(tmp_path, anime_checkpoint, processed_anime):
    """A copy of the trained checkpoint (fine-tuning replaces it) and an event log with a few users."""
    checkpoint = tmp_path / "sasrec.pt"
    shutil.copyfile(anime_checkpoint, checkpoint)
    log = EventLog(tmp_path / "events.db")
    items = load_dataset(processed_anime).items.sort_values("members", ascending=False)
    popular = items["item_id"].to_numpy()[:60]
    rng = np.random.default_rng(0)
    for user in range(12):
        for n, item_id in enumerate(rng.choice(popular, 8, replace=False)):
            log.append(2_000_000_000 + user, int(item_id), int(rng.integers(1, 4)), timestamp=1e9 + 10 * user + n)
    log.append(2_000_000_000, 999_999_999, LOVE)  # a title nobody knows
    return checkpoint, tmp_path / "events.db", processed_anime


QUICK = ft.FinetuneConfig(epochs=1, progress=False)


def test_accepted_checkpoint_becomes_current_atomically_and_loads(workspace, tmp_path):
    checkpoint, events, data = workspace
    before = sha256_of(checkpoint)
    # tolerance 1: always accepted (NDCG <= 1), so this test checks the swap, not the training's luck
    report = ft.finetune(events, checkpoint, data, ft.FinetuneConfig(epochs=1, tolerance=1.0, progress=False),
                         tmp_path / "report.json")
    assert report["accepted"]
    assert report["log"]["unknown_title_events"] == 1 and report["log"]["new_users"] == 12
    assert sha256_of(checkpoint) != before
    assert sha256_of(tmp_path / "sasrec.previous.pt") == before
    assert sha256_of(checkpoint) == sha256_of(report["finetuned_checkpoint"])
    assert set(report["valid_finetuned"]) >= {"ndcg@10", "hr@10", "n_cases"}
    evaluated_before = int((load_dataset(data).sequences.lengths >= 3).sum())
    assert report["valid_finetuned"]["n_cases"] == report["valid_previous"]["n_cases"] == evaluated_before + 12
    assert (tmp_path / "report.json").exists()
    Recommender.load(checkpoint, data)  # the served format, same vocabulary


def test_fine_tuning_starts_from_the_current_weights(workspace, monkeypatch):
    checkpoint, events, data = workspace
    seen = {}

    def spy(dataset, model_cfg, train_cfg, split=None, checkpoint_path=None, init_state=None, on_epoch=None):
        seen["init"], seen["epochs"] = init_state, train_cfg.epochs
        model = SASRec(model_cfg)
        model.load_state_dict(init_state)
        return TrainResult(model.eval(), [], {}, 0.0, 0)

    monkeypatch.setattr(ft, "train_sasrec", spy)
    report = ft.finetune(events, checkpoint, data, QUICK)
    current = load_checkpoint(checkpoint).model.state_dict()
    assert seen["epochs"] == 1
    assert all(torch.equal(seen["init"][k], v) for k, v in current.items())
    assert report["accepted"]  # unchanged weights: exactly as good, and "not worse" accepts it


def test_an_ease_checkpoint_is_refitted_on_the_merged_histories(workspace, ease_checkpoint, tmp_path):
    _, events, data = workspace
    checkpoint = tmp_path / "model.pt"
    shutil.copyfile(ease_checkpoint, checkpoint)
    previous = load_checkpoint(checkpoint).model
    report = ft.finetune(events, checkpoint, data, ft.FinetuneConfig(tolerance=1.0, progress=False))
    assert report["accepted"] and report["valid_finetuned"]["n_cases"] == report["valid_previous"]["n_cases"]
    current = load_checkpoint(checkpoint).model
    merged = ft.merge_log(load_dataset(data), EventLog(events).events()).dataset
    expected = EASE(previous.l2).fit(merged, split_of(merged).train)
    assert isinstance(current, EASE) and current.l2 == previous.l2 == 150.0
    np.testing.assert_array_equal(current.weights, expected.weights)
    assert not np.array_equal(current.weights, previous.weights)
    Recommender.load(checkpoint, data)  # the served format, same vocabulary


def test_a_ranker_checkpoint_is_refitted_with_its_options_on_the_merged_histories(workspace, ranker_checkpoint,
                                                                                   tmp_path):
    _, events, data = workspace
    checkpoint = tmp_path / "ranker.pt"
    shutil.copyfile(ranker_checkpoint, checkpoint)
    previous = load_checkpoint(checkpoint)
    report = ft.finetune(events, checkpoint, data, ft.FinetuneConfig(tolerance=1.0, progress=False))
    assert report["accepted"] and report["valid_finetuned"]["n_cases"] == report["valid_previous"]["n_cases"]
    current = load_checkpoint(checkpoint)
    merged = ft.merge_log(load_dataset(data), EventLog(events).events()).dataset
    expected = TwoStage(**previous.model.options()).fit(merged, split_of(merged).train)
    assert isinstance(current.model, TwoStage) and current.model.options() == previous.model.options()
    assert current.model.booster.model_to_string() == expected.booster.model_to_string()
    assert current.model.booster.model_to_string() != previous.model.booster.model_to_string()
    assert current.metrics["served"] == previous.metrics["served"]  # the blend chosen on validation, still served
    Recommender.load(checkpoint, data).recommend([(a, 3, None) for a in merged.items["item_id"][:5]], k=5)


def test_a_kind_not_fine_tuned_is_refused_in_one_line_and_left_as_it_is(workspace, ranker_checkpoint, tmp_path,
                                                                        capsys, monkeypatch):
    _, events, data = workspace
    monkeypatch.setattr(ft, "FINETUNED_KINDS", ("sasrec", "ease"))  # as for a kind added without a fine-tune
    checkpoint = tmp_path / "ranker.pt"
    shutil.copyfile(ranker_checkpoint, checkpoint)
    before = checkpoint.read_bytes()
    assert ft.main(["--events", str(events), "--checkpoint", str(checkpoint), "--data", str(data), "--report",
                    str(tmp_path / "report.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {checkpoint}: a ranker checkpoint is not fine-tuned here (only sasrec, ease are)")
    assert "python -m nostrade.train --model ranker" in err and err.count("\n") == 1
    assert checkpoint.read_bytes() == before and not [p for p in tmp_path.iterdir() if "finetuned" in p.name]


def test_out_takes_the_accepted_model_and_leaves_the_checkpoint_as_it_is(workspace, ease_checkpoint, tmp_path):
    """The app's retrain: the shipped checkpoint (maybe tracked by git) is never written; progress is reported."""
    _, events, data = workspace
    checkpoint, out = tmp_path / "model.pt", tmp_path / "model.finetuned.pt"
    shutil.copyfile(ease_checkpoint, checkpoint)
    before = sha256_of(checkpoint)
    steps = []
    report = ft.finetune(events, checkpoint, data, ft.FinetuneConfig(tolerance=1.0, progress=False), out_path=out,
                         on_step=lambda fraction, text: steps.append((fraction, text)))
    assert report["accepted"] and report["current_checkpoint"] == str(out) and "previous_checkpoint" not in report
    assert sha256_of(checkpoint) == before and sha256_of(out) == sha256_of(report["finetuned_checkpoint"])
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert any("Refitting EASE" in text for _, text in steps)
    again = ft.finetune(events, out, data, ft.FinetuneConfig(tolerance=1.0, progress=False), out_path=out)
    assert again["accepted"] and sha256_of(tmp_path / "model.finetuned.previous.pt") == sha256_of(
        report["finetuned_checkpoint"])
    Recommender.load(out, data)


def test_a_worse_model_is_not_made_current(workspace, monkeypatch, tmp_path):
    checkpoint, events, data = workspace
    before = sha256_of(checkpoint)

    def worse(dataset, model_cfg, train_cfg, split=None, checkpoint_path=None, init_state=None, on_epoch=None):
        torch.manual_seed(1)
        model = SASRec(model_cfg)  # fresh random weights: worse than the trained model
        return TrainResult(model.eval(), [], {}, 0.0, 0)

    monkeypatch.setattr(ft, "train_sasrec", worse)
    report = ft.finetune(events, checkpoint, data, QUICK)
    assert not report["accepted"]
    assert report["valid_finetuned"]["ndcg@10"] < report["valid_previous"]["ndcg@10"]
    assert sha256_of(checkpoint) == before
    assert not (tmp_path / "sasrec.previous.pt").exists()
    assert list(tmp_path.glob("sasrec.finetuned-*.pt"))  # the candidate is kept for inspection


def test_cli_exit_codes(workspace, tmp_path, tiny_checkpoint, capsys):
    checkpoint, events, data = workspace
    report = str(tmp_path / "r.json")
    assert ft.main(["--events", str(tmp_path / "missing.db"), "--checkpoint", str(checkpoint), "--data", str(data),
                    "--report", report]) == 2
    assert "missing.db" in capsys.readouterr().err
    assert ft.main(["--events", str(events), "--checkpoint", str(tiny_checkpoint), "--data", str(data),
                    "--report", report]) == 2  # trained on another vocabulary
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "iid map" in err and len(err.strip().splitlines()) == 1
    EventLog(tmp_path / "empty.db")
    assert ft.main(["--events", str(tmp_path / "empty.db"), "--checkpoint", str(checkpoint), "--data", str(data),
                    "--report", report]) == ft.EXIT_NO_EVENTS == 4
    assert "no usable rating events" in capsys.readouterr().out
    assert ft.main(["--epochs", "0"]) == 2
    with pytest.raises(SystemExit):
        ft.main(["--help"])
    shown = capsys.readouterr().out
    assert "Exit status" in shown and "3  not accepted" in shown and "7  cannot write" in shown


def run_main(capsys, events, checkpoint, data, tmp_path) -> tuple[int, str]:
    code = ft.main(["--events", str(events), "--checkpoint", str(checkpoint), "--data", str(data),
                    "--report", str(tmp_path / "r.json"), "--epochs", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code in (0, 3, 4) or (err.startswith("error: ") and err.count("\n") == 1), err
    return code, err


def test_unusable_checkpoints_exit_5_naming_the_file(workspace, tmp_path, capsys):
    _, events, data = workspace
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "folder.pt").mkdir()
    torch.save({"x": BadPickle()}, tmp_path / "evil.pt")
    for name in ("empty.pt", "folder.pt", "evil.pt"):
        code, err = run_main(capsys, events, tmp_path / name, data, tmp_path)
        assert code == ft.EXIT_BAD_CHECKPOINT == 5 and err.startswith(f"error: {tmp_path / name}: ")
    assert not (tmp_path / "pwned").exists()


class BadPickle:
    def __reduce__(self):
        return (print, ("pwned",))


def test_files_that_are_not_event_logs_exit_6_and_are_left_as_they_were(workspace, tmp_path, capsys):
    """Defect: pointed at an unrelated SQLite file, fine-tuning added tables to it and switched it to WAL."""
    checkpoint, _, data = workspace
    (tmp_path / "text.db").write_bytes(b"this is no database " * 50)
    conn = sqlite3.connect(tmp_path / "app.db")
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    conn = sqlite3.connect(tmp_path / "other.db")
    conn.execute("CREATE TABLE events (id INTEGER)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    for name in ("text.db", "app.db", "other.db"):
        before = (tmp_path / name).read_bytes()
        code, err = run_main(capsys, tmp_path / name, checkpoint, data, tmp_path)
        assert code == ft.EXIT_BAD_LOG == 6 and err.startswith(f"error: {tmp_path / name}: ")
        assert (tmp_path / name).read_bytes() == before
        assert not (tmp_path / f"{name}-wal").exists() and not (tmp_path / f"{name}-shm").exists()


def test_a_read_only_folder_or_a_full_disk_exits_7_and_keeps_the_checkpoint(tmp_path, ease_checkpoint, processed_anime,
                                                                         capsys, monkeypatch):
    checkpoint = tmp_path / "model.pt"
    shutil.copyfile(ease_checkpoint, checkpoint)
    log = EventLog(tmp_path / "events.db")
    ids = load_dataset(processed_anime).items["item_id"].to_numpy()[:6]
    for n, item_id in enumerate(ids):
        log.append(3_000_000_000, int(item_id), LOVE, timestamp=1e9 + n)
    before = sha256_of(checkpoint)
    real_open = atomic.os.open

    def read_only(path, *args, **kwargs):
        if Path(path).parent == tmp_path:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", read_only)
    code, err = run_main(capsys, tmp_path / "events.db", checkpoint, processed_anime, tmp_path)
    assert code == ft.EXIT_CANNOT_WRITE == 7 and err.startswith(f"error: cannot write {tmp_path / 'model.finetuned-'}")
    assert err.endswith(": Read-only file system\n")
    monkeypatch.setattr(atomic.os, "open", real_open)

    def full_disk(obj, f):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    code, err = run_main(capsys, tmp_path / "events.db", checkpoint, processed_anime, tmp_path)
    assert code == 7 and err.endswith(": No space left on device\n") and "inline_container" not in err
    assert sha256_of(checkpoint) == before
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("events.db")] == ["model.pt"]


def test_data_with_timestamps_end_to_end(tmp_path, tiny_checkpoint, processed_sample):
    """Synthetic data with real timestamps and monthly bins: the log's events get the data's time bins."""
    checkpoint = tmp_path / "sasrec.pt"
    shutil.copyfile(tiny_checkpoint, checkpoint)
    log = EventLog(tmp_path / "events.db")
    ids = load_dataset(processed_sample).items["item_id"].to_numpy()[:5]
    for n, item_id in enumerate(ids):
        log.append(10**6, int(item_id), LOVE, timestamp=2e9 + n)  # long after the data: the last time bin
    report = ft.finetune(tmp_path / "events.db", checkpoint, processed_sample,
                         ft.FinetuneConfig(epochs=1, tolerance=1.0, progress=False))
    assert report["accepted"] and report["log"]["log_interactions_added"] == 5
    assert load_checkpoint(checkpoint).meta["finetune_log"]["new_users"] == 1


# ------------------------------------------------------------------------------ concurrent runs and lineage

ALWAYS = ft.FinetuneConfig(tolerance=1.0, progress=False)  # tolerance 1: always accepted


@pytest.fixture
def ease_workspace(workspace, ease_checkpoint, tmp_path):
    _, events, data = workspace
    checkpoint = tmp_path / "model.pt"
    shutil.copyfile(ease_checkpoint, checkpoint)
    other = EventLog(tmp_path / "other.db")
    for n, item_id in enumerate(load_dataset(data).items["item_id"].to_numpy()[:8]):
        other.append(2_100_000_000, int(item_id), LOVE, timestamp=1e9 + n)
    return checkpoint, events, tmp_path / "other.db", data


def test_two_parallel_finetunes_keep_the_original_and_each_names_what_it_installed(ease_workspace, tmp_path, capsys):
    """Defect: two fine-tunes of one model.pt both said "accepted (previous kept at model.previous.pt)"; the original
    was in no file afterwards, and both wrote the same candidate name."""
    checkpoint, events, other, data = ease_workspace
    original = sha256_of(checkpoint)
    second = {}

    def run_the_second(fraction, text):  # while the first one trains
        if fraction == 0.3 and not second:
            second["code"] = ft.main(["--events", str(other), "--checkpoint", str(checkpoint), "--data", str(data),
                                      "--report", str(tmp_path / "second.json"), "--tolerance", "1"])
            second["err"] = capsys.readouterr().err

    report = ft.finetune(events, checkpoint, data, ALWAYS, on_step=run_the_second)
    assert second["code"] == ft.EXIT_BUSY == 8 and second["err"].count("\n") == 1
    assert second["err"].startswith(f"error: {tmp_path}: another fine-tune is writing checkpoints here; nothing was")
    assert not (tmp_path / "second.json").exists()
    assert report["installed"] == str(checkpoint) and sha256_of(tmp_path / "model.previous.pt") == original
    assert load_checkpoint(checkpoint).content_sha256 == report["finetuned_content_sha256"]
    again = ft.finetune(other, checkpoint, data, ALWAYS)  # once the first has finished: a run of its own
    assert again["installed"] == str(checkpoint) and again["finetuned_checkpoint"] != report["finetuned_checkpoint"]
    assert load_checkpoint(checkpoint).content_sha256 == again["finetuned_content_sha256"]
    assert Path(report["finetuned_checkpoint"]).exists() and Path(again["finetuned_checkpoint"]).exists()


def test_a_checkpoint_replaced_while_fine_tuning_is_not_overwritten(ease_workspace, anime_checkpoint, tmp_path):
    checkpoint, events, _, data = ease_workspace

    def retrained_meanwhile(fraction, text):
        if fraction == 0.3:
            atomic.copy(anime_checkpoint, checkpoint)  # e.g. `make train` wrote a new model.pt

    with pytest.raises(ft.Busy, match=rf"^{checkpoint}: changed while fine-tuning .* kept at .*model\.finetuned-"):
        ft.finetune(events, checkpoint, data, ALWAYS, on_step=retrained_meanwhile)
    assert sha256_of(checkpoint) == sha256_of(anime_checkpoint) and not (tmp_path / "model.previous.pt").exists()


def test_the_fine_tuned_file_is_served_only_while_it_descends_from_the_checkpoint(ease_workspace, anime_checkpoint,
                                                                                  tmp_path):
    """Defect: the app served a fine-tune of a replaced model because its file was newer (mtime only)."""
    checkpoint, events, other, data = ease_workspace
    tuned = tmp_path / "model.finetuned.pt"
    assert ft.served_checkpoint(checkpoint, tuned, data) == ft.ServedChoice(checkpoint)  # none yet
    ft.finetune(events, checkpoint, data, ALWAYS, out_path=tuned)
    assert ft.served_checkpoint(checkpoint, tuned, data) == ft.ServedChoice(tuned)
    ft.finetune(other, tuned, data, ALWAYS, out_path=tuned)  # a fine-tune of the fine-tune: the same lineage
    assert ft.served_checkpoint(checkpoint, tuned, data) == ft.ServedChoice(tuned)
    atomic.copy(anime_checkpoint, checkpoint)  # a new model.pt; the fine-tuned file stays the newer one
    os_touch_later(tuned)
    choice = ft.served_checkpoint(checkpoint, tuned, data)
    assert choice.path == checkpoint
    assert choice.reason.startswith("model.finetuned.pt is not served: it was fine-tuned from ")
    assert f"not from the current model.pt ({load_checkpoint(checkpoint).content_sha256[:12]}…)" in choice.reason


def os_touch_later(path: Path) -> None:
    import os
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_a_damaged_or_foreign_fine_tuned_file_falls_back_to_the_checkpoint(ease_workspace, tiny_checkpoint, tmp_path):
    checkpoint, events, _, data = ease_workspace
    tuned = tmp_path / "model.finetuned.pt"
    ft.finetune(events, checkpoint, data, ALWAYS, out_path=tuned)
    good = tuned.read_bytes()
    tuned.write_bytes(good[:len(good) // 2])
    choice = ft.served_checkpoint(checkpoint, tuned, data)
    assert choice.path == checkpoint and choice.reason.startswith(f"model.finetuned.pt is not served ({tuned}: not a "
                                                                  "readable checkpoint")
    assert choice.reason.endswith("serving model.pt, the last good model")
    shutil.copyfile(tiny_checkpoint, tuned)  # another data set's model
    choice = ft.served_checkpoint(checkpoint, tuned, data)
    assert choice.path == checkpoint and "trained on iid map sha256" in choice.reason
    tuned.write_bytes(good)
    assert ft.served_checkpoint(checkpoint, tuned, data) == ft.ServedChoice(tuned)
