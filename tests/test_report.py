"""nostrade.report.summarise: per-seed results -> mean ± std, in the benchmarks' row format."""
import pytest

import numpy as np

from nostrade.report import METRICS, case_ndcg, lift, lift_text, paired_bootstrap, seed_mean_ndcg, summarise


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


def ranks_row(name: str, per_seed_ranks: list[dict]) -> dict:
    return {"model": name, "per_seed": [{t: {"ranks": r} for t, r in ranks.items()} for ranks in per_seed_ranks]}


def test_case_ndcg_and_the_seed_mean():
    assert case_ndcg([1, 3, 11]).tolist() == pytest.approx([1.0, 0.5, 0.0])
    row = ranks_row("a", [{"next_item": [1, 11]}, {"next_item": [11, 1]}])
    assert seed_mean_ndcg(row, "next_item").tolist() == pytest.approx([0.5, 0.5])


def test_a_clear_lift_has_an_interval_above_zero_and_a_coin_flip_is_a_tie():
    rng = np.random.default_rng(0)
    users = {"next_item": np.arange(400)}
    better = ranks_row("better", [{"next_item": rng.integers(1, 4, 400).tolist()}])
    worse = ranks_row("worse", [{"next_item": rng.integers(5, 30, 400).tolist()}])
    clear = lift(better, worse, users, 400)
    assert clear["low"] > 0 and not clear["tie"] and clear["a"] == "better"
    noise = ranks_row("noise", [{"next_item": rng.permutation(better["per_seed"][0]["next_item"]["ranks"]).tolist()}])
    same = lift(noise, better, users, 400)
    assert same["low"] < 0 < same["high"] and same["tie"] and lift_text(same).endswith("(tie)")


def test_the_delta_lift_subtracts_the_disliked_group_and_resamples_users_not_cases():
    users = {"next_liked": np.array([0, 1, 2]), "next_disliked": np.array([3, 4])}
    a = ranks_row("a", [{"next_liked": [1, 1, 1], "next_disliked": [50, 50]}])
    b = ranks_row("b", [{"next_liked": [1, 1, 1], "next_disliked": [1, 1]}])
    result = lift(a, b, users, 5, "delta")
    assert result["diff"] == pytest.approx(1.0) and result["low"] == pytest.approx(1.0)  # every draw: +1
    one_user = paired_bootstrap({"next_item": np.array([1.0, 1.0, -1.0])}, {"next_item": np.array([0, 0, 1])},
                                {"next_item": 1.0}, 2, n_resamples=500)
    assert one_user["low"] == pytest.approx(-1.0) and one_user["high"] == pytest.approx(1.0)  # users, not cases
