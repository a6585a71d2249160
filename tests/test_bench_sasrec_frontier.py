"""benchmarks/sasrec_frontier.py: every mix of the two levers measured, the mean over seeds, the targets checked."""
import json

import sasrec_frontier
from model_contract import one_torch_thread  # noqa: F401 (autouse)

from nostrade.synthetic import SyntheticConfig, write_synthetic


def test_every_mix_is_measured_per_seed_and_averaged(tmp_path):
    write_synthetic(SyntheticConfig(n_users=80, n_items=40, interactions_per_user=15, seed=5), tmp_path / "raw")
    out = tmp_path / "frontier.json"
    assert sasrec_frontier.main(["--data", str(tmp_path / "raw"), "--out", str(out), "--seeds", "0,1", "--quick"]) == 0
    record = json.loads(out.read_text())
    n_mixes = len(sasrec_frontier.LIKE_WEIGHTS) * len(sasrec_frontier.PRIOR_WEIGHTS)
    assert [s["seed"] for s in record["per_seed"]] == [0, 1]
    assert all(len(s["mixes"]) == n_mixes for s in record["per_seed"]) and len(record["mean"]) == n_mixes
    for i, m in enumerate(record["mean"]):
        assert all(0.0 <= m[g] <= 1.0 for g in ("next_item", "next_liked", "next_disliked"))
        assert abs(m["delta"] - (m["next_liked"] - m["next_disliked"])) < 1e-12
        assert m["next_item"] == sum(s["mixes"][i]["next_item"] for s in record["per_seed"]) / 2
        assert m["meets_targets"] == all(m[k] >= floor for k, floor in sasrec_frontier.TARGETS.items())
    assert record["any_meets_targets"] == any(m["meets_targets"] for m in record["mean"])
    assert record["best_on_validation"]["valid_net_ndcg@10"] == max(m["valid_net_ndcg@10"] for m in record["mean"])
    assert out.with_suffix(".png").stat().st_size > 0


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert sasrec_frontier.main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "x.json")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
