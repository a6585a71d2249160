"""benchmarks/load.py on a fresh checkout: prepares the sample, serves a random model, writes the figures."""
import json

import load


def test_quick_load_run_writes_every_run_and_the_headline(tmp_path):
    out = tmp_path / "load.json"
    assert load.main(["--out", str(out), "--requests", "20", "--warmup", "4", "--workers", "1",
                      "--concurrency", "1", "2"]) == 0
    record = json.loads(out.read_text())
    assert [(r["workers"], r["concurrency"]) for r in record["runs"]] == [(1, 1), (1, 2)]
    assert all(r["errors"] == 0 and r["ok"] == 20 for r in record["runs"])
    assert (record["workers"], record["concurrency"]) == (1, 1)
    assert record["rps"] > 0 and 0 < record["p50_ms"] <= record["p99_ms"]
