"""benchmarks/load.py: serves a checkpoint under uvicorn, writes every run and the headline, labelled by row."""
import json

import load


def test_quick_load_run_writes_every_run_and_the_headline(ease_checkpoint, processed_anime, tmp_path):
    out = tmp_path / "load.json"
    assert load.main(["--out", str(out), "--requests", "20", "--warmup", "4", "--workers", "1",
                      "--concurrency", "1", "2", "--checkpoint", str(ease_checkpoint), "--data",
                      str(processed_anime)]) == 0
    record = json.loads(out.read_text())
    (row,) = record["rows"].values()
    assert record["headline"] == str(ease_checkpoint) and record["kind"] == row["kind"] == "ease"
    assert [(r["workers"], r["concurrency"]) for r in row["runs"]] == [(1, 1), (1, 2)]
    assert all(r["errors"] == 0 and r["ok"] == 20 for r in row["runs"])
    assert (record["workers"], record["concurrency"]) == (1, 1)
    assert record["rps"] > 0 and 0 < record["p50_ms"] <= record["p99_ms"]
    assert row["runs"][0]["mean_micro_batch"] == 1.0  # one request in flight: each scored alone
    assert 1.0 <= row["runs"][1]["mean_micro_batch"] <= 2.0
    assert record["microbatch"] == {"max": None, "wait_ms": None}  # the server's own settings
    assert record["server"].startswith("uvicorn --workers") and row["runs"][0]["busiest_worker_share"] == 1.0


def test_load_run_with_reuse_port_workers_counts_both(ease_checkpoint, processed_anime, tmp_path):
    out = tmp_path / "load.json"
    assert load.main(["--out", str(out), "--requests", "40", "--warmup", "4", "--workers", "2", "--concurrency",
                      "4", "--reuse-port", "--checkpoint", str(ease_checkpoint), "--data",
                      str(processed_anime)]) == 0
    record = json.loads(out.read_text())
    (run,) = next(iter(record["rows"].values()))["runs"]
    assert record["server"].startswith("code/serve.py") and run["errors"] == 0 and run["ok"] == 40
    assert 0.5 <= run["busiest_worker_share"] <= 1.0
