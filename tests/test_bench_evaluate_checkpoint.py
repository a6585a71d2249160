"""benchmarks/evaluate_checkpoint.py: the pipeline's evaluate stage scores a checkpoint as served."""
import json

import ablation
import evaluate_checkpoint
import pytest
from model_contract import one_torch_thread  # noqa: F401 (autouse)

from nostrade.baselines import EASE
from nostrade.dataset import load_dataset
from nostrade.registry import load_checkpoint
from nostrade.split import split_of


def test_the_served_figures_are_the_ablations_served_row(ease_checkpoint, processed_anime, tmp_path):
    out = tmp_path / "evaluate.json"
    assert evaluate_checkpoint.main(["--checkpoint", str(ease_checkpoint), "--data", str(processed_anime),
                                     "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["served"] == load_checkpoint(ease_checkpoint).metrics["served"]
    dataset = load_dataset(processed_anime)
    split = split_of(dataset)  # the served:ease row, by the ablation's own path from a fresh EASE
    row = ablation.served_result("served:ease", 0, EASE().fit(dataset, split.train), dataset, split,
                                 record["served"]["dislike_weight"])
    assert row["alpha"] == record["served"]["alpha"]
    for target in ("next_item", "next_liked", "next_disliked"):
        assert record["test"][target]["ndcg@10"] == pytest.approx(row[target]["ndcg@10"])
        assert record["test"][target]["n_cases"] == row[target]["n_cases"] > 0
    assert record["test"]["delta_ndcg@10"] == pytest.approx(row["delta_ndcg@10"])


def test_bad_input_is_one_line_and_exit_2(tiny_checkpoint, processed_sample, ease_checkpoint, tmp_path, capsys):
    out = tmp_path / "evaluate.json"
    cases = [(tiny_checkpoint, processed_sample, "records no served settings"),
             (ease_checkpoint, processed_sample, "retrain on this data"),
             (tmp_path / "missing.pt", processed_sample, "missing.pt")]
    for checkpoint, data, reason in cases:
        assert evaluate_checkpoint.main(["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and reason in err
    assert not out.exists()
