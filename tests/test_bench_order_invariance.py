"""benchmarks/order_invariance.py: each model's own top-10 overlap across click orders, under its row."""
import json

import order_invariance


def test_a_checkpoint_is_measured_under_its_own_row(ease_checkpoint, processed_anime, tmp_path):
    out = tmp_path / "order.json"
    assert order_invariance.main(["--out", str(out), "--checkpoint", str(ease_checkpoint), "--data",
                                  str(processed_anime), "--users", "6", "--orders", "3"]) == 0
    record = json.loads(out.read_text())
    (row,) = record["rows"].values()
    assert row["model"]["kind"] == "ease" and row["users"] == 6
    assert row["top10_overlap"] == 1.0  # EASE reads a set: every order gives the same top 10
    assert record["targets"]["top10_overlap"] == 0.9


def test_checkpoint_and_data_go_together(tmp_path, capsys):
    assert order_invariance.main(["--out", str(tmp_path / "x.json"), "--checkpoint", "model.pt"]) == 2
    assert capsys.readouterr().err.startswith("error: give both --checkpoint and --data")
