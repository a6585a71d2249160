"""benchmarks/faithfulness.py runs end to end (quick mode: one epoch, 20 users, the anime sample)."""
import json

import faithfulness


def test_quick_run_writes_rates_in_range(tmp_path):
    out = tmp_path / "faithfulness.json"
    assert faithfulness.main(["--quick", "--threads", "1", "--out", str(out)]) == 0
    anime = json.loads(out.read_text())["anime"]
    assert anime["pairs"] > 0
    for kind in ("final", "logit"):
        assert 0.0 <= anime[kind]["faithful_rate"] <= 1.0
