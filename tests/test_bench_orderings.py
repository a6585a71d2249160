"""benchmarks/orderings.py: served validation of a set-model SASRec per count of orderings."""
import json

import orderings
import served


def test_every_count_is_scored_through_the_served_function(processed_anime, tmp_path):
    checkpoint = served.random_sasrec(tmp_path / "set.pt", processed_anime, order_is_time=False)
    out = tmp_path / "orderings.json"
    assert orderings.main(["--checkpoint", str(checkpoint), "--data", str(processed_anime), "--out", str(out),
                           "--counts", "1", "2"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"1", "2"} and all(0 <= r["ndcg@10"] <= 1 and r["n_cases"] > 0 for r in rows.values())


def test_a_model_that_is_not_a_set_model_is_refused(ease_checkpoint, processed_anime, tmp_path, capsys):
    assert orderings.main(["--checkpoint", str(ease_checkpoint), "--data", str(processed_anime),
                           "--out", str(tmp_path / "x.json")]) == 2
    assert "not a set-model SASRec" in capsys.readouterr().err
