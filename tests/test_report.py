"""nostrade.report.summarise: per-seed results -> mean ± std, in the benchmarks' row format."""
import pytest

from nostrade.report import METRICS, summarise


def result(seed: int, value: float, **extra) -> dict:
    metrics = {k: value for k in METRICS} | {"n_cases": 7}
    return {"seed": seed, "next_item": metrics, **extra}


def test_mean_and_population_std_of_every_metric():
    row = summarise([result(0, 0.1), result(1, 0.3)])
    assert row["ndcg@10"] == pytest.approx(0.2) and row["std"]["ndcg@10"] == pytest.approx(0.1)
    assert row["seeds"] == [0, 1] and row["n_cases"] == 7 and len(row["per_seed"]) == 2
    assert "next_liked" not in row and "fit_seconds" not in row  # only what the results hold


def test_other_targets_lengths_and_scalars():
    per_seed = [result(s, v, next_liked={k: v for k in METRICS} | {"n_cases": 3}, fit_seconds=10.0 * (s + 1),
                       by_length={"2-9": {"ndcg@10": v, "n_cases": 4}, "100+": {"ndcg@10": None, "n_cases": 0}})
                for s, v in ((0, 0.2), (1, 0.4))]
    row = summarise(per_seed)
    assert row["next_liked"]["hr@10"] == pytest.approx(0.3) and row["next_liked"]["n_cases"] == 3
    assert row["std"]["next_liked_hr@10"] == pytest.approx(0.1)
    assert row["by_length"]["2-9"] == {"ndcg@10": pytest.approx(0.3), "std": pytest.approx(0.1), "n_cases": 4}
    assert row["by_length"]["100+"] == {"ndcg@10": None, "std": None, "n_cases": 0}
    assert row["fit_seconds"] == 15.0 and row["std"]["fit_seconds"] == 5.0


def test_another_key_for_the_main_target():
    row = summarise([{"seed": 0, "test": {k: 0.5 for k in METRICS} | {"n_cases": 943}}], target="test")
    assert row["mrr"] == 0.5 and row["std"]["mrr"] == 0.0 and row["n_cases"] == 943
