"""benchmarks/cold_titles.py: the cold-title protocol on small synthetic data, a tiny SASRec."""
import json

import cold_titles
import numpy as np

from nostrade.dataset import load_dataset
from nostrade.split import split_of


def test_cold_titles_are_a_seeded_tenth_of_those_with_enough_data():
    users = np.array([0, 9, 1, 5, 7] + [6] * 20)  # iid 0 is padding; iid 2 has too few users
    cold = cold_titles.cold_titles(users, seed=3)
    assert len(cold) == 2 and set(cold) <= set(np.flatnonzero(users >= cold_titles.MIN_TRAIN_USERS))
    assert np.array_equal(cold, cold_titles.cold_titles(users, seed=3))
    assert not np.array_equal(cold, cold_titles.cold_titles(users, seed=4))


def run(processed_sample, tmp_path, *flags: str) -> dict:
    out = tmp_path / "cold.json"
    assert cold_titles.main(["--data", str(processed_sample), "--out", str(out), "--epochs", "2", "--d-model", "16",
                             "--n-layers", "1", "--max-len", "20", "--num-threads", "1", "--no-progress",
                             "--feature-epochs", "1", *flags]) == 0
    return json.loads(out.read_text())


def test_a_run_writes_every_row_over_the_cold_targets_only(processed_sample, tmp_path):
    record = run(processed_sample, tmp_path, "--seeds", "0,1")
    assert set(record["rows"]) == {"content", "popularity", "sasrec+features", "sasrec+features+id"}
    assert all({"hr@10", "ndcg@10", "std", "valid"} <= set(r) for r in record["rows"].values())
    assert record["rows"]["popularity"]["hr@10"] == 0.0  # a cold title has no training users: it ranks last
    dataset = load_dataset(processed_sample)
    n_test = len(split_of(dataset).test)
    assert 0 < record["n_cold_targets"] == sum(s["n_cold_targets"] for s in record["per_seed"]) < 2 * n_test
    assert record["config"]["seeds"] == [0, 1] and record["config"]["sasrec"]["d_model"] == 16
    assert record["config"]["sasrec"]["features_as"] == "fallback"
    assert {"hr@10", "ndcg@10"} <= set(record["rows"]["sasrec+features+id"]["warm"])  # every test target
    assert not any("by_id_weight" in r for r in record["rows"].values())  # a "sum" model's knob


def test_a_sum_model_is_also_measured_at_every_id_weight(processed_sample, tmp_path):
    record = run(processed_sample, tmp_path, "--seeds", "0", "--features-as", "sum")
    weights = record["rows"]["sasrec+features+id"]["by_id_weight"]
    assert set(weights) == {str(w) for w in cold_titles.ID_WEIGHTS} and all("warm" in w for w in weights.values())
    assert "warm" not in record["rows"]["sasrec+features"]["by_id_weight"]["1.0"]
    assert weights["1.0"]["hr@10"] == record["rows"]["sasrec+features+id"]["hr@10"]  # the config's weight: 1
