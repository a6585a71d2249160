"""Smoke test of benchmarks/scale.py (--quick: 2,000 synthetic users, a tiny model): every run happens and the
JSON has the schema of issue 18, the ce epoch extrapolated from the steps it ran."""
import json

import scale


def test_quick_run_writes_the_schema(tmp_path):
    out = tmp_path / "scale.json"
    assert scale.main(["--out", str(out), "--quick", "--ce-steps", "3", "--no-progress"]) == 0
    record = json.loads(out.read_text())
    assert record["events"] > 50_000 and record["users"] == 2_000 and record["synthetic"] is True
    assert record["epoch_s"]["ce"] > 0 and record["epoch_s"]["sampled"] > 0 and record["ddp2_epoch_s"] > 0
    assert record["epoch_s_extrapolated"] == {"ce": True, "sampled": False}
    assert record["runs"]["ce"]["steps_run"] == 3 < record["runs"]["ce"]["epoch_steps"]
    assert record["runs"]["sampled"]["steps_run"] == record["runs"]["sampled"]["epoch_steps"]
    assert 0 < record["eval_s"] and 100 < record["peak_rss_mb"] and record["machine"]["cpus"] >= 1
    assert set(record["met"]) == set(record["targets"])
