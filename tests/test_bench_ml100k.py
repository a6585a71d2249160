"""Smoke test of benchmarks/ml100k.py (--quick, a tiny model): the peer split is imposed exactly and the JSON
has the schema of issue 3. Skipped where ../shared/data/ml-100k is absent (it may not be redistributed)."""
import json
from pathlib import Path

import ml100k
import pytest

REPO = Path(__file__).resolve().parents[1]
ML100K = REPO.parent / "shared" / "data" / "ml-100k"

pytestmark = pytest.mark.skipif(not (ML100K / "ml-100k.split.tsv.gz").exists(), reason="no ../shared/data/ml-100k")


def test_quick_run_imposes_the_peer_split_and_writes_the_schema(tmp_path):
    out = tmp_path / "ml100k.json"
    code = ml100k.main(["--data", str(ML100K), "--out", str(out), "--quick", "--max-len", "20",
                        "--d-model", "16", "--n-layers", "1", "--no-progress"])
    assert code == 0
    record = json.loads(out.read_text())
    ours = record["nostrade"]
    assert {"ndcg@10", "hr@10", "ndcg@20", "hr@20", "mrr", "seconds_to_best", "epochs", "per_seed"} <= set(ours)
    assert len(ours["per_seed"]) == 1 and ours["per_seed"][0]["test"]["n_cases"] == 943
    assert record["dataset"]["n_users"] == 943 and record["dataset"]["n_items"] == 1682
    assert record["dataset"]["n_interactions"] == 100_000
    assert record["config"]["model"]["max_len"] == 20 and record["config"]["quick"] is True


def test_missing_split_file_exits_2(tmp_path, capsys):
    assert ml100k.main(["--data", str(tmp_path), "--out", str(tmp_path / "x.json")]) == 2
    assert "ml-100k.split.tsv.gz" in capsys.readouterr().err
