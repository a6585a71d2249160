"""The training command line (nostrade.train): auto, EASE, the ranker, exit statuses, torchrun."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nostrade import train
from nostrade.baselines.ease import EASE
from nostrade.dataset import load_dataset
from nostrade.ranker import TwoStage
from nostrade.registry import load_checkpoint
from nostrade.sasrec_net import SASRec
from nostrade.sasrec_training import last_checkpoint_path
from nostrade.scoring import SERVED_ALPHAS
from nostrade.split import split_of

TINY_FLAGS = ["--max-len", "20", "--d-model", "16", "--n-layers", "1", "--batch-size", "32", "--lr", "3e-3",
              "--warmup", "5", "--num-threads", "1", "--no-progress"]


def test_cli_writes_checkpoint_and_run_record(processed_sample, tmp_path, capsys):
    out, metrics = tmp_path / "sasrec.pt", tmp_path / "metrics.json"
    code = train.main(["--data", str(processed_sample), "--out", str(out), "--metrics", str(metrics),
                       "--model", "sasrec", "--epochs", "2", "--seed", "5", *TINY_FLAGS])
    assert code == 0
    record = json.loads(metrics.read_text())
    printed = capsys.readouterr().out
    assert f"delta {record['test']['delta_ndcg@10']:+.4f}" in printed  # and what delta means, in words:
    assert "delta = NDCG@10 of the held-out titles people liked minus" in printed
    assert f"of the {record['test']['next_disliked']['n_cases']} held-out titles they disliked" in printed
    meta = json.loads((processed_sample / "meta.json").read_text())
    assert record["iid_map_sha256"] == meta["iid_map_sha256"] and record["seed"] == 5
    assert record["model_config"]["d_model"] == 16 and record["train_config"]["epochs"] == 2
    assert record["epochs"] == 2 and record["wall_seconds"] > 0 and len(record["history"]) == 2
    assert set(record["test"]) == {"next_item", "next_liked", "next_disliked", "delta_ndcg@10"}
    loaded = load_checkpoint(out, expected_iid_map_sha256=meta["iid_map_sha256"])
    assert loaded.metrics["test"]["next_item"]["ndcg@10"] == record["test"]["next_item"]["ndcg@10"]
    assert record["model"] == "sasrec" and isinstance(loaded.model, SASRec) and record["auto"] is None


def test_cli_ease_fits_in_closed_form(ease_checkpoint, processed_anime):
    record = json.loads((ease_checkpoint.parent / "metrics.json").read_text())
    assert not load_dataset(processed_anime).order_is_time
    assert record["model"] == "ease" and record["model_config"]["l2"] == 150.0 and record["epochs"] == 0
    assert set(record["test"]) == {"next_item", "next_liked", "next_disliked", "delta_ndcg@10"}
    loaded = load_checkpoint(ease_checkpoint)
    assert isinstance(loaded.model, EASE) and loaded.metrics["valid"] == record["valid"]
    assert loaded.metrics["test"]["next_item"]["ndcg@10"] == record["test"]["next_item"]["ndcg@10"] > 0.1


def test_cli_auto_serves_the_best_candidate_by_served_validation(processed_sample, tmp_path, capsys):
    out, metrics = tmp_path / "auto.pt", tmp_path / "metrics.json"
    assert train.main(["--data", str(processed_sample), "--out", str(out), "--metrics", str(metrics),
                       "--candidates", "sasrec,ease", "--epochs", "2", *TINY_FLAGS]) == 0
    record = json.loads(metrics.read_text())
    auto = record["auto"]
    table = auto["candidates"]
    assert set(table) == {"sasrec", "ease"} and all(table[kind]["alpha"] in SERVED_ALPHAS for kind in table)
    assert auto["chosen"] == max(table, key=lambda kind: table[kind]["ndcg@10"]) == record["model"]
    dataset = load_dataset(processed_sample)
    loaded = load_checkpoint(out, expected_iid_map_sha256=dataset.iid_map_hash)
    assert loaded.model.kind == auto["chosen"] and loaded.metrics["auto"] == auto
    served = train.served_validation(loaded.model, dataset, split_of(dataset))
    assert served["ndcg@10"] == pytest.approx(table[auto["chosen"]]["ndcg@10"])
    # the settings chosen on validation are what predict serves by default
    assert loaded.metrics["served"] == {"alpha": served["alpha"], "dislike_weight": served["dislike_weight"]}
    assert f"auto chose {auto['chosen']}" in capsys.readouterr().out
    assert not last_checkpoint_path(out).exists()  # a candidate that may lose writes no resumable state


def test_auto_ranker_has_ease_content_and_popularity_where_the_order_is_not_time(processed_anime):
    dataset = load_dataset(processed_anime)
    assert train.auto_generators(dataset) == ("ease", "content", "popularity")
    timed = dataclasses.replace(dataset, meta={**dataset.meta, "order_is_time": True})
    assert train.auto_generators(timed) == train.GENERATORS
    assert train.auto_candidates(dataset) == ("ease", "ranker") and train.auto_candidates(timed) == train.AUTO_KINDS


def test_cli_model_ranker_fits_the_two_stage_ranker_on_the_training_part(ranker_checkpoint, processed_anime):
    record = json.loads((ranker_checkpoint.parent / "metrics.json").read_text())
    config = record["model_config"]
    assert record["model"] == "ranker" and config["generators"] == ["itemknn", "ease", "content", "popularity"]
    assert config["n_candidates"] == 50 and config["booster"].startswith("<") and "sha256" in config["booster"]
    loaded = load_checkpoint(ranker_checkpoint, expected_iid_map_sha256=load_dataset(processed_anime).iid_map_hash)
    assert isinstance(loaded.model, TwoStage) and loaded.metrics["valid"] == record["valid"]
    assert np.isnan(loaded.model.title_features).any()  # the catalogue's missing values came back as NaN
    assert loaded.metrics["test"]["next_item"]["ndcg@10"] == record["test"]["next_item"]["ndcg@10"] > 0.1


def test_cli_ranker_options_are_checked_before_any_fitting(processed_anime, tmp_path, capsys):
    out = tmp_path / "ranker.pt"
    for flags, fragment in ((["--generators", "ease,nope"], "generators"), (["--n-candidates", "0"], "n_candidates"),
                            (["--model", "auto", "--candidates", "ease,nope"], "--candidates")):
        assert train.main(["--data", str(processed_anime), "--out", str(out), "--model", "ranker", *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and fragment in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert train.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere" in err and "make_processed_data.py" in err
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--loss", "mse"])
    assert exit_info.value.code == 2


def test_cli_unwritable_out_exits_7_and_a_damaged_resume_checkpoint_exits_5(processed_anime, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "model.pt"
    assert train.main(["--data", str(processed_anime), "--out", str(out), "--metrics", str(tmp_path / "m.json"),
                       "--model", "ease"]) == 7
    assert capsys.readouterr().err == f"error: cannot write {out}: File exists\n"
    out = tmp_path / "sasrec.pt"
    last_checkpoint_path(out).write_bytes(b"")  # emptied by a failing disk
    assert train.main(["--data", str(processed_anime), "--out", str(out), "--model", "sasrec", "--resume",
                       "--metrics", str(tmp_path / "m.json"), *TINY_FLAGS]) == 5
    assert capsys.readouterr().err.startswith(f"error: {last_checkpoint_path(out)}: not a readable checkpoint")


def failure_report(stderr: str, tail: int = 1500) -> str:
    """The lines that carry a worker's actual error (torchrun's summary at the end names only the signal),
    then the tail."""
    causes = [line for line in stderr.splitlines() if any(w in line for w in ("terminate", "Error", "error"))]
    return "error lines:\n" + "\n".join(causes[:30]) + f"\n...\nlast {tail} characters:\n" + stderr[-tail:]


def test_failure_report_shows_the_error_lines_before_the_summary():
    stderr = "terminate called after throwing an instance of 'gloo::IoException'\n" + "x" * 5000 + "\nSignal 6"
    report = failure_report(stderr)
    assert report.index("gloo::IoException") < report.index("Signal 6")


def test_data_parallel_with_two_gloo_processes(processed_sample, tmp_path):
    """torchrun with 2 CPU processes trains the same kind of model as 1 process (not the same numbers:
    each process sees half the users per step and draws its own dropout)."""
    def args(name):
        return ["--data", str(processed_sample), "--out", str(tmp_path / f"{name}.pt"), "--model", "sasrec",
                "--metrics", str(tmp_path / f"{name}.json"), "--epochs", "4", *TINY_FLAGS]

    assert train.main(args("single")) == 0
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr", "127.0.0.1",
               "--nproc_per_node", "2", "-m", "nostrade.train", *args("double")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"})
    assert done.returncode == 0, failure_report(done.stderr)
    single, double = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("single", "double"))
    assert double["world_size"] == 2 and single["world_size"] == 1
    for record in (single, double):
        losses = [h["loss"] for h in record["history"]]
        assert losses[-1] < losses[0]
    assert double["history"][-1]["loss"] == pytest.approx(single["history"][-1]["loss"], rel=0.1)
    assert double["valid"]["ndcg@10"] == pytest.approx(single["valid"]["ndcg@10"], rel=0.5)
