"""benchmarks/ablation.py: a --quick run on tiny synthetic raw data, and its parts."""
import json
from pathlib import Path

import ablation
import numpy as np
import pytest
import torch
from model_contract import one_torch_thread  # noqa: F401 (autouse)

from nostrade.sequences import Sequences
from nostrade.synthetic import SyntheticConfig, write_synthetic


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    write_synthetic(SyntheticConfig(n_users=80, n_items=40, interactions_per_user=15, seed=5), folder)
    return folder


@pytest.fixture(scope="module")
def quick_run(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results") / "synthetic.json"
    assert ablation.main(["--data", str(raw), "--out", str(out), "--quick", "--num-threads", "1"]) == 0
    return out


def test_quick_run_writes_every_row_the_table_and_the_plots(quick_run):
    record = json.loads(quick_run.read_text())
    assert [r["model"] for r in record["rows"]] == ablation.default_rows(order_is_time=True)
    for row in record["rows"]:
        for key in ("ndcg@10", "hr@10", "ndcg@20", "hr@20"):
            assert 0.0 <= row[key] <= 1.0 and key in row["std"]
        assert {"next_liked", "next_disliked", "delta_ndcg@10", "by_length", "coverage@10", "ild@10"} <= set(row)
        assert 0.0 < row["coverage@10"] <= 1.0
        assert row["delta_ndcg@10"] == pytest.approx(row["per_seed"][0]["delta_ndcg@10"])
    rankers = [r for r in record["rows"] if r["model"].startswith("ranker")]
    assert len(rankers) == 8 and all(0.0 <= r["candidate_recall"] <= 1.0 for r in rankers)
    assert record["dataset"]["has_timestamps"] and record["config"]["quick"]
    md = quick_run.with_suffix(".md").read_text()
    assert all(f"| {name} |" in md for name in ablation.default_rows(order_is_time=True))
    for kind in ("metrics", "alpha", "by_length"):
        png = quick_run.with_name(f"{quick_run.stem}_{kind}.png")
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_genre_rows_blend_the_plain_sasrec_model(quick_run):
    rows = {r["model"]: r for r in json.loads(quick_run.read_text())["rows"]}
    assert rows["sasrec+genre-0.1"]["per_seed"][0]["alpha"] == 0.1
    # same trained model, different blends: the figures differ from the plain model's and from each other
    assert len({rows[name]["mrr"] for name in ("sasrec", "sasrec+genre-0.1", "sasrec+genre-0.3")}) == 3


def test_shuffled_keeps_each_users_events_and_targets_and_is_seeded():
    seqs = Sequences.from_lists([[1, 2, 3, 4, 5, 6, 10, 11], [7, 8, 9]], [[1, 2, 3, 1, 2, 3, 2, 2], [3, 3, 1]],
                                [[1, 1, 2, 2, 3, 3, 4, 4], [1, 2, 3]])
    a, b = ablation.shuffled(seqs, seed=4), ablation.shuffled(seqs, seed=4)
    assert np.array_equal(a.iid, b.iid) and not np.array_equal(a.iid, seqs.iid)
    np.testing.assert_array_equal(a.offsets, seqs.offsets)
    np.testing.assert_array_equal(a.iid[[6, 7, 9, 10]], [10, 11, 8, 9])  # validation and test targets stay last
    for row in range(2):
        events = lambda s: sorted(zip(*(x[s.offsets[row]:s.offsets[row + 1]] for x in (s.iid, s.feedback, s.time_bin))))
        assert events(a) == events(seqs)


def test_update_replaces_only_the_rows_it_reruns(quick_run, raw):
    before = {r["model"]: r for r in json.loads(quick_run.read_text())["rows"]}
    assert ablation.main(["--data", str(raw), "--out", str(quick_run), "--quick", "--num-threads", "1",
                          "--models", "popularity,content", "--update"]) == 0
    record = json.loads(quick_run.read_text())
    assert [r["model"] for r in record["rows"]] == ablation.default_rows(order_is_time=True)
    assert [u["rows"] for u in record["updates"]] == [["popularity", "content"]]
    after = {r["model"]: r for r in record["rows"]}
    assert after["sasrec"] == before["sasrec"] and after["popularity"]["ndcg@10"] == before["popularity"]["ndcg@10"]
    assert "re-ran popularity, content" in quick_run.with_suffix(".md").read_text()


def test_an_update_drops_the_rows_no_longer_defined(quick_run, raw):
    record = json.loads(quick_run.read_text())
    quick_run.write_text(json.dumps({**record, "rows": record["rows"] + [{**record["rows"][0], "model": "retired"}]}))
    assert ablation.main(["--data", str(raw), "--out", str(quick_run), "--quick", "--num-threads", "1",
                          "--models", "popularity", "--update"]) == 0
    record = json.loads(quick_run.read_text())
    assert [r["model"] for r in record["rows"]] == ablation.default_rows(order_is_time=True)
    assert record["updates"][-1]["dropped"] == ["retired"]
    assert "dropped retired, rows no longer defined" in quick_run.with_suffix(".md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--data", "/nonexistent/folder"], "not a folder"),
    (["--models", "sasrec,bert4rec"], "unknown rows"),
    (["--set", "als.factors"], "BASELINE.OPTION=VALUE"),
])
def test_bad_arguments_are_one_line_errors_with_exit_2(raw, argv, message, capsys):
    argv = argv if "--data" in argv else ["--data", str(raw), *argv]
    assert ablation.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_rows_follow_the_data_order():
    """Where the order is not time: the set-model variants and the file-order control, nothing to shuffle."""
    order_free = ablation.default_rows(order_is_time=False)
    assert {"sasrec+position", "sasrec-fixed-order", "sasrec-file-order", "ease"} <= set(order_free)
    assert not {"sasrec-shuffled", "sasrec-no-time"} & set(order_free)
    assert not set(ablation.ORDER_FREE_ONLY) & set(ablation.default_rows(order_is_time=True))


def test_an_update_over_new_seeds_joins_the_rows_earlier_seeds(quick_run):
    row = next(r for r in json.loads(quick_run.read_text())["rows"] if r["model"] == "als")
    again = {**row["per_seed"][0], "next_item": {**row["per_seed"][0]["next_item"], "ndcg@10": 0.5}}
    redone = ablation.summarise([{**again, "seed": 1}])
    merged = ablation.merge_seeds(row, {"model": "als", **redone})
    assert merged["seeds"] == [0, 1]
    assert merged["ndcg@10"] == pytest.approx((row["ndcg@10"] + 0.5) / 2)
    replaced = ablation.merge_seeds(row, {"model": "als", **ablation.summarise([{**again, "seed": 0}])})
    assert replaced["seeds"] == [0] and replaced["ndcg@10"] == 0.5


def test_the_length_columns_run_shortest_first_after_a_json_round_trip(quick_run):
    record = json.loads(quick_run.read_text())  # keys come back sorted: "10-19" before "2-9"
    header = next(line for line in ablation.markdown(record).splitlines() if line.startswith("| model | 2-9"))
    assert header.index("2-9") < header.index("10-19") < header.index("100+")


def test_a_pipeline_run_names_its_dvc_stage_in_the_header(quick_run):
    record = {**json.loads(quick_run.read_text()), "updates": []}  # other tests here add --update runs
    assert record["stage"] is None and ablation.markdown(record).splitlines()[2] == f"`{record['command']}`"
    header = ablation.markdown({**record, "stage": "ablation-anime"}).splitlines()[2]
    assert header == f"`dvc repro ablation-anime` (dvc.yaml, params.yaml), which ran `{record['command']}`"
