import numpy as np
import pandas as pd
import pytest
import torch

from nostrade import checkpoint
from nostrade.checkpoint import CheckpointError, CheckpointMismatch, read_checkpoint, save_checkpoint
from nostrade.registry import load_checkpoint
from nostrade.baselines.ease import EASE
from nostrade.dataset import Dataset
from nostrade.sasrec_net import SASRec, SASRecConfig
from nostrade.sequences import Sequences
from nostrade.sasrec_training import TrainConfig

META = {"iid_map_sha256": "a" * 64, "source": "test", "time_bins": {"n_bins": 3}}


def saved(tmp_path, **model_overrides):
    torch.manual_seed(0)
    cfg = SASRecConfig(**{"n_items": 20, "n_time_bins": 3, "max_len": 6, "d_model": 16, **model_overrides})
    model = SASRec(cfg).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, TrainConfig(seed=3), META, {"valid": {"ndcg@10": 0.5}})
    return path, model, cfg


def test_round_trip_gives_the_same_scores_and_plain_values(tmp_path):
    path, model, cfg = saved(tmp_path, use_time=False)
    loaded = load_checkpoint(path, expected_iid_map_sha256=META["iid_map_sha256"], expected_n_items=20)
    assert loaded.model.cfg == model.cfg and loaded.train_cfg["seed"] == 3 and loaded.metrics["valid"]["ndcg@10"] == 0.5
    assert loaded.iid_map_sha256 == META["iid_map_sha256"] and loaded.meta == META
    history = Sequences.from_lists([[1, 2, 3], [4, 5]], [[1, 2, 3], [3, 3]], [[1, 2, 3], [2, 3]])
    torch.testing.assert_close(loaded.model.score(history), model.score(history))
    torch.load(path, weights_only=True)  # nothing but tensors and plain values inside


HISTORY = Sequences.from_lists([[1, 2, 3], [4, 5]], [[1, 2, 3], [3, 3]], [[1, 2, 3], [2, 3]])


def ease_saved(tmp_path):
    train = Sequences.from_lists([[1, 2, 3], [2, 3, 4], [5, 6, 1], [3, 4, 5, 6]])
    items = pd.DataFrame({"iid": range(1, 7), "item_id": range(101, 107), "genres": [["Drama"], ["Comedy"]] * 3})
    model = EASE(l2=2.0).fit(Dataset(items, train, np.arange(4), META), train)
    path = tmp_path / "ease.pt"
    save_checkpoint(path, model, {}, META, {"valid": {"ndcg@10": 0.25}})
    return path, model


def test_ease_round_trip_gives_the_same_scores(tmp_path):
    path, model = ease_saved(tmp_path)
    loaded = load_checkpoint(path, expected_iid_map_sha256=META["iid_map_sha256"], expected_n_items=6)
    assert isinstance(loaded.model, EASE) and loaded.model.config() == {"l2": 2.0, "liked_targets": True, "n_items": 6}
    np.testing.assert_array_equal(loaded.model.item_vectors(), model.item_vectors())
    assert loaded.metrics["valid"]["ndcg@10"] == 0.25 and read_checkpoint(path)["model_kind"] == "ease"
    torch.testing.assert_close(loaded.model.score(HISTORY), model.score(HISTORY))
    with pytest.raises(CheckpointMismatch, match=r"aaaaaaaaaaaa.*bbbbbbbbbbbb"):
        load_checkpoint(path, expected_iid_map_sha256="b" * 64)
    with pytest.raises(CheckpointMismatch, match=r"6 items.*has 7"):
        load_checkpoint(path, expected_n_items=7)


def test_a_checkpoint_without_model_kind_is_a_sasrec(tmp_path):
    path, model, _ = saved(tmp_path)
    payload = read_checkpoint(path)
    del payload["model_kind"]  # written before EASE was served
    torch.save(payload, path)
    torch.testing.assert_close(load_checkpoint(path).model.score(HISTORY), model.score(HISTORY))


def test_another_iid_map_is_refused_naming_both_hashes(tmp_path):
    path, _, _ = saved(tmp_path)
    with pytest.raises(CheckpointMismatch, match=r"aaaaaaaaaaaa.*bbbbbbbbbbbb"):
        load_checkpoint(path, expected_iid_map_sha256="b" * 64)


def test_another_item_count_is_refused_naming_both_counts(tmp_path):
    path, _, _ = saved(tmp_path)
    with pytest.raises(CheckpointMismatch, match=r"20 items.*has 21"):
        load_checkpoint(path, expected_n_items=21)


def test_missing_checkpoint_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="nostrade.train"):
        read_checkpoint(tmp_path / "none.pt")


def test_a_failed_save_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path, model, cfg = saved(tmp_path)
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, TrainConfig(), META, {})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


# ------------------------------------------------------------------------------------------ damaged files

def flip_bytes_of(path, tensor: torch.Tensor) -> None:
    """Overwrite 4 bytes inside ``tensor``'s data in the file with 0xff (a NaN in float32), like a bad disk."""
    data = bytearray(path.read_bytes())
    at = data.find(tensor.contiguous().numpy().tobytes()[:64])
    assert at > 0
    data[at + 8:at + 12] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["sasrec", "ease"])
def test_flipped_bytes_in_the_weights_are_caught_by_the_checksum(tmp_path, kind):
    path, model = (saved(tmp_path)[:2]) if kind == "sasrec" else ease_saved(tmp_path)
    largest = max(model.state_dict().values(), key=lambda t: t.numel())
    flip_bytes_of(path, largest)
    assert not torch.isfinite(torch.load(path, weights_only=True)["model_state"][
        max(model.state_dict(), key=lambda n: model.state_dict()[n].numel())]).all()  # torch itself loads it
    with pytest.raises(CheckpointError, match=rf"^{path}: damaged: its weights do not match the checksum"):
        load_checkpoint(path)


@pytest.mark.parametrize("kind", ["sasrec", "ease"])
def test_non_finite_weights_are_refused_also_without_a_checksum(tmp_path, kind):
    path, _ = (saved(tmp_path)[:2]) if kind == "sasrec" else ease_saved(tmp_path)
    payload = read_checkpoint(path)
    del payload["content_sha256"]  # written before the checksum existed
    name = max(payload["model_state"], key=lambda n: payload["model_state"][n].numel())
    payload["model_state"][name].view(-1)[3] = float("nan")
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"^{path}: weight '{name}' holds 1 non-finite values"):
        load_checkpoint(path, allow_unchecked=True)


def rename_key_by_one_bit(path, key: bytes) -> None:
    """Flip one bit of ``key`` where the pickle names it, as a bad disk could."""
    data = bytearray(path.read_bytes())
    at = data.find(key)
    assert at > 0
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["sasrec", "ease"])
def test_a_renamed_checksum_key_does_not_make_damaged_weights_load(tmp_path, kind, monkeypatch):
    path, model = (saved(tmp_path)[:2]) if kind == "sasrec" else ease_saved(tmp_path)
    rename_key_by_one_bit(path, b"content_sha256")
    largest = max(model.state_dict().values(), key=lambda t: t.numel())
    data = bytearray(path.read_bytes())
    at = data.find(largest.contiguous().numpy().tobytes()[:64])
    data[at + 8:at + 12] = (np.frombuffer(bytes(data[at + 8:at + 12]), np.float32) * 3).tobytes()  # finite, wrong
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"^{path}: no checksum \(content_sha256\): damaged, or written before"):
        load_checkpoint(path)
    monkeypatch.setenv(checkpoint.ALLOW_UNCHECKED_ENV, "1")  # the explicit flag for an old file one trusts
    assert load_checkpoint(path).model.config() == model.config()


def test_files_that_are_not_checkpoints_get_one_line_naming_them(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("this must never run",))

    cases = {"empty.pt": b"", "text.pt": b"hello", "truncated.pt": saved(tmp_path)[0].read_bytes()[:3000]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"x": Boom()}, tmp_path / "evil.pt")
    torch.save({"just": "a dict"}, tmp_path / "other.pt")
    (tmp_path / "folder.pt").mkdir()
    expected = {"empty.pt": "not a readable checkpoint", "text.pt": "not a readable checkpoint",
                "truncated.pt": "not a readable checkpoint", "evil.pt": "refused: it holds objects other than",
                "other.pt": "not a nostrade checkpoint", "folder.pt": "is a folder"}
    for name, text in expected.items():
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(tmp_path / name)
        assert str(caught.value).startswith(f"{tmp_path / name}: {text}") and "\n" not in str(caught.value)


def test_checkpoints_are_readable_by_other_users(tmp_path):
    import os
    import stat
    before = os.umask(0o022)
    try:
        path, _, _ = saved(tmp_path)
    finally:
        os.umask(before)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# ------------------------------------------------------------------------------------------ two-stage ranker

def ranker_saved(tmp_path):
    """A ranker over every kind of generator (tiny settings), saved as `python -m nostrade.train --model ranker` does."""
    from model_contract import BLOCKS
    from nostrade.ranker import GENERATORS, FittedGenerators
    from nostrade.registry import GENERATOR_MODELS, make_model

    options = {"sasrec": {"epochs": 2, "d_model": 16, "max_len": 10, "num_threads": 1, "progress": False},
               "gru4rec": {"epochs": 2, "dim": 8, "device": "cpu"}, "als": {"factors": 8, "iterations": 3}}
    model = make_model("ranker", generators=GENERATORS, n_candidates=10, min_child_samples=5,
                       fit_generator=FittedGenerators(GENERATOR_MODELS, options))
    model.fit(BLOCKS.dataset, BLOCKS.train)
    path = tmp_path / "ranker.pt"
    save_checkpoint(path, model, {}, {**META, "n_items": BLOCKS.dataset.n_items}, {"valid": {"ndcg@10": 0.5}})
    return path, model, BLOCKS.new_history


def test_a_ranker_round_trip_gives_the_same_scores_and_retrieval(tmp_path):
    from nostrade.ranker import GENERATORS, TwoStage

    path, model, history = ranker_saved(tmp_path)
    loaded = load_checkpoint(path, expected_iid_map_sha256=META["iid_map_sha256"], expected_n_items=model.n_items)
    assert isinstance(loaded.model, TwoStage) and read_checkpoint(path)["model_kind"] == "ranker"
    assert loaded.model.generator_names == GENERATORS and not hasattr(loaded.model, "ranker")
    assert loaded.model.like_generators == ("sasrec",) and "sasrec_log_like" in loaded.model.feature_names()
    for name, generator in loaded.model.generators.items():  # every generator kind rebuilt
        assert torch.equal(generator.score(history), model.generators[name].score(history)), name
    scores, retrieved = loaded.model.score_and_retrieval(history)
    expected_scores, expected_retrieved = model.score_and_retrieval(history)
    assert torch.equal(scores, expected_scores) and np.array_equal(retrieved, expected_retrieved)
    np.testing.assert_array_equal(loaded.model.title_features, model.title_features)  # NaN (missing) where it was


def test_a_ranker_checkpoint_is_checked_like_the_others(tmp_path):
    path, model, _ = ranker_saved(tmp_path)
    payload = read_checkpoint(path)
    assert checkpoint.readable_config(model)["booster"].startswith(f"<{len(payload['model_cfg']['booster']):,} characters")
    payload["model_cfg"]["booster"] = payload["model_cfg"]["booster"].replace("leaf_value=", "leaf_value=1", 1)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="damaged: its weights do not match the checksum"):
        load_checkpoint(path)  # the LightGBM model is inside the checksum
    del payload["content_sha256"]
    payload["model_state"]["als.item_factors"].view(-1)[0] = float("inf")
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="weight 'als.item_factors' holds 1 non-finite values"):
        load_checkpoint(path, allow_unchecked=True)


def test_a_features_checkpoint_round_trip_scores_catalogue_titles_alike(tmp_path):
    from nostrade.item_features import FeatureEncoding
    items = pd.DataFrame({"genres": [["A"], ["B"], ["A", "B"], []], "type": ["TV", "Movie", "TV", None],
                          "members": pd.array([10, 100, 1000, pd.NA], dtype="Int64")})
    encoding = FeatureEncoding.fit(items, "anime").to_dict()
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=4, max_len=4, d_model=8, n_heads=2, n_layers=1, use_item_features=True,
                                item_features=encoding)).eval()
    model.set_titles(items, np.array([False, True, True, False, True]))
    path = tmp_path / "features.pt"
    save_checkpoint(path, model, TrainConfig(), {"iid_map_sha256": "a" * 64}, {})
    loaded = load_checkpoint(path).model
    outside = pd.DataFrame({"genres": [["B"]], "type": ["OVA"], "members": pd.array([50], dtype="Int64")})
    history = Sequences.from_lists([[1, 2, 3], [4]])
    assert torch.equal(loaded.title_vectors(outside), model.title_vectors(outside))
    assert torch.equal(loaded.score(history, table=loaded.served_table(outside)),
                       model.score(history, table=model.served_table(outside)))
    assert loaded.config()["item_features"] == encoding and torch.equal(loaded.has_id, model.has_id)
