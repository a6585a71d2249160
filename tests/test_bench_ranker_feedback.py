"""benchmarks/ranker_feedback.py: every variant measured on the validation and the test events."""
import json

import ranker_feedback
from model_contract import one_torch_thread  # noqa: F401 (autouse)

from nostrade.synthetic import SyntheticConfig, write_synthetic


def test_every_variant_has_validation_and_test_groups(tmp_path):
    write_synthetic(SyntheticConfig(n_users=80, n_items=40, interactions_per_user=15, seed=5), tmp_path / "raw")
    out = tmp_path / "feedback.json"
    assert ranker_feedback.main(["--data", str(tmp_path / "raw"), "--out", str(out), "--quick"]) == 0
    record = json.loads(out.read_text())
    assert [row["variant"] for row in record["rows"]] == list(ranker_feedback.VARIANTS)
    for row in record["rows"]:
        for part in ("valid", "test"):
            groups = row[part]
            assert all(0.0 <= groups[g] <= 1.0 for g in ("next_item", "next_liked", "next_disliked"))
            assert groups["delta"] == groups["next_liked"] - groups["next_disliked"]


def test_a_missing_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert ranker_feedback.main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "x.json")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
