"""The prep pipeline: rules, the output contract, atomic byte-identical writes, and the CLI."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nostrade import prep
from nostrade.dataset import load_dataset
from nostrade.sources import DataError

REPO = Path(__file__).resolve().parents[1]
ML100K = REPO.parent / "shared" / "data" / "ml-100k"
MAL_LIST = REPO / "tests" / "fixtures" / "mal" / "UserAnimeList.csv"
CATALOGUE = "anime_id,name,genre,type,episodes,rating,members\n" + "".join(
    f"{a},Title {a},Drama,TV,12,7.0,100\n" for a in (10, 20, 30, 40, 50))


def _cli():
    spec = importlib.util.spec_from_file_location("make_processed_data", REPO / "make_processed_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raw_files(tmp_path: Path, rows: list[tuple], timestamps: bool = True) -> tuple[Path, Path]:
    """A tiny anime catalogue (ids 10..50) and a rating.csv of (user, anime, rating[, timestamp]) rows."""
    items = tmp_path / "anime.csv"
    items.write_text(CATALOGUE)
    ratings = tmp_path / "rating.csv"
    header = "user_id,anime_id,rating" + (",timestamp" if timestamps else "")
    ratings.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return items, ratings


def build(tmp_path, rows, timestamps=True, **cfg):
    items, ratings = raw_files(tmp_path, rows, timestamps)
    config = prep.PrepConfig(source="anime", items=items, ratings=ratings, out=tmp_path / "out",
                             artifacts=tmp_path / "out", **{"min_item_users": 1, **cfg})
    return prep.build(prep.load_raw(config), config)


def events(processed) -> pd.DataFrame:
    frame = processed.interactions.to_pandas()
    items = processed.items.to_pandas()[["iid", "item_id"]]
    return frame.merge(items, on="iid").sort_values(["uid", "position"]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------ rules

def test_feedback_buckets_and_unrated_like(tmp_path):
    rows = [(1, 10, r, 100 + k) for k, r in enumerate([1, 4])] + [(1, 20, 5, 200), (1, 30, 7, 300),
                                                               (1, 40, 8, 400), (1, 50, -1, 500)]
    out = events(build(tmp_path, rows))  # (1, 10) twice: the later rating (4) wins
    assert out["item_id"].tolist() == [10, 20, 30, 40, 50]
    assert out["feedback"].tolist() == [1, 2, 2, 3, 2]
    assert np.isnan(out["rating"].iloc[-1]) and out["rating"].iloc[0] == 4


def test_unrated_drop_and_custom_thresholds(tmp_path):
    rows = [(1, 10, 5, 1), (1, 20, 6, 2), (1, 30, 9, 3), (1, 40, -1, 4)]
    processed = build(tmp_path, rows, unrated="drop", dislike_max=5, like_max=8)
    assert events(processed)["feedback"].tolist() == [1, 2, 3]
    assert processed.meta["dropped"]["unrated_rows"] == 1
    assert processed.meta["feedback_thresholds"]["dislike_max"] == 5
    assert processed.meta["unrated_policy"]["policy"] == "drop"


def test_order_by_timestamp(tmp_path):
    rows = [(2, 50, 8, 300), (2, 10, 8, 100), (2, 40, 8, 200), (2, 20, 8, 200), (1, 30, 8, 5)]
    processed = build(tmp_path, rows)
    out = events(processed)
    assert out["user_id"].tolist() == [1, 2, 2, 2, 2] and out["uid"].tolist() == [0, 1, 1, 1, 1]
    # 40 and 20 share a timestamp: their order is the seeded shuffle's, not the file's
    assert out["item_id"].tolist()[:2] == [30, 10] and set(out["item_id"][2:4]) == {20, 40}
    assert out["item_id"].iloc[4] == 50 and out["position"].tolist() == [0, 0, 1, 2, 3]
    assert processed.meta["order_is_time"] is True
    assert processed.meta["ties"] == {"rule": "seeded shuffle within equal timestamps", "seed": 0, "n_tied_events": 2}


def tied_rows(n_users: int = 30) -> list[tuple]:
    """Every user rates the five items in the same second, in file order 10..50; user 1 rates one more later."""
    return [(u, a, 8, 1000 + u) for u in range(1, n_users + 1) for a in (10, 20, 30, 40, 50)] + [(1, 10, 3, 5000)]


def test_ties_are_shuffled_by_the_seed(tmp_path):
    first, again, other = (events(build(tmp_path, tied_rows(), tie_seed=seed)) for seed in (0, 0, 1))
    assert first.equals(again) and not first["item_id"].equals(other["item_id"])
    for out in (first, other):
        per_user = out[out["uid"] > 0].groupby("uid")["item_id"].agg(list)
        assert (per_user.map(sorted).map(tuple) == (10, 20, 30, 40, 50)).all()  # the same events...
        assert (per_user.map(tuple) != (10, 20, 30, 40, 50)).any()  # ...not (all) in the file's order
    # user 1's later re-rating of 10 supersedes its tied one, wherever the shuffle put that
    user_1 = first[first["uid"] == 0]
    assert user_1["item_id"].iloc[-1] == 10 and user_1["rating"].iloc[-1] == 3 and len(user_1) == 5
    assert build(tmp_path, tied_rows(), tie_seed=1).meta["ties"]["n_tied_events"] == 30 * 5 - 1


def test_without_ties_the_seed_changes_nothing(tmp_path):
    rows = [(u, a, 8, u * 100 - a) for u in (1, 2, 3) for a in (10, 20, 30, 40, 50)]
    processed = [build(tmp_path, rows, tie_seed=seed) for seed in (0, 1)]
    assert processed[0].interactions.equals(processed[1].interactions)
    assert processed[0].meta["ties"]["n_tied_events"] == 0
    assert events(processed[0])["item_id"].tolist() == [50, 40, 30, 20, 10] * 3


def test_without_timestamps_file_order_and_one_bin(tmp_path):
    processed = build(tmp_path, [(1, 30, 8), (1, 10, 8), (1, 20, 3)], timestamps=False)
    out = events(processed)
    assert out["item_id"].tolist() == [30, 10, 20]
    assert out["time_bin"].tolist() == [1, 1, 1] and out["timestamp"].isna().all()
    assert processed.meta["has_timestamps"] is False and processed.meta["order_is_time"] is False
    assert processed.meta["ties"]["rule"].startswith("n/a")
    assert processed.meta["time_bins"]["scheme"] == "none" and processed.meta["time_bins"]["n_bins"] == 1


def test_duplicates_latest_wins(tmp_path):
    # with timestamps: the latest by time wins even if it comes first in the file; an exact tie goes to the
    # event the seeded shuffle puts later (the file order within a tie is not time), so either can win
    rows = [(1, 10, 9, 500), (1, 10, 2, 100), (1, 20, 3, 50), (1, 20, 8, 50), (1, 30, 7, 60)]
    winners = set()
    for seed in range(8):
        processed = build(tmp_path, rows, tie_seed=seed)
        out = events(processed)
        assert out["item_id"].tolist() == [20, 30, 10] and out["rating"].tolist()[1:] == [7, 9]
        assert processed.meta["dropped"]["duplicate_rows"] == 2
        winners.add(out["rating"].iloc[0])
    assert winners == {3, 8}
    # without timestamps: the later row in the file wins and takes its place in the order
    out = events(build(tmp_path, [(1, 10, 9), (1, 20, 5), (1, 10, 2)], timestamps=False))
    assert out[["item_id", "rating"]].values.tolist() == [[20, 5], [10, 2]]


def test_unknown_items_are_dropped_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match=r"2 rating rows name an item id absent from the catalogue \(e.g. 77, 99\)"):
        processed = build(tmp_path, [(1, 10, 8, 1), (1, 99, 8, 2), (2, 77, 8, 3), (2, 20, 8, 4)])
    assert processed.meta["dropped"]["unknown_item_rows"] == 2
    assert events(processed)["item_id"].tolist() == [10, 20]


def test_item_filter_drops_rare_items_then_empty_users(tmp_path):
    rows = [(u, 10, 8, u) for u in range(1, 4)] + [(u, 20, 8, 10 + u) for u in range(1, 3)] + [(9, 30, 8, 50)]
    processed = build(tmp_path, rows, min_item_users=2)
    meta = processed.meta
    assert meta["n_items"] == 2 and meta["n_users"] == 3 and meta["n_interactions"] == 5
    assert meta["dropped"]["rare_items"] == 1 and meta["dropped"]["rare_item_rows"] == 1
    assert meta["dropped"]["users_without_events"] == 1
    assert processed.items.column("item_id").to_pylist() == [10, 20]
    assert json.loads(processed.iid_map_json) == {"10": 1, "20": 2}


def test_empty_result_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"rating\.csv: no interactions left after filtering \(min_item_users=5"):
        build(tmp_path, [(1, 10, 8, 1), (2, 20, 8, 2)], min_item_users=5)


def test_mal_user_lists(tmp_path):
    config = prep.PrepConfig(source="mal", ratings=MAL_LIST, out=tmp_path, artifacts=tmp_path, min_item_users=1)
    processed = prep.build(prep.load_raw(config), config)
    meta, out = processed.meta, events(processed)
    assert meta["source"] == "mal" and meta["order_is_time"] is True and meta["unrated_policy"]["value"] == 0
    assert {k: meta["dropped"][k] for k in ("plan_to_watch_rows", "undated_rows", "duplicate_rows")} == {
        "plan_to_watch_rows": 2, "undated_rows": 1, "duplicate_rows": 1}
    assert meta["ties"]["n_tied_events"] == 4  # karthiga's 59 and 210, RedvelvetDaisuki's 1 and 5
    assert out.groupby("uid")["user_id"].first().tolist() == [0, 1, 2]  # Damonashu, RedvelvetDaisuki, karthiga
    # Damonashu: 1 re-rated later (10 wins over 9) comes last; 20 had no my_last_updated
    assert out.loc[out["uid"] == 0, ["item_id", "rating", "feedback"]].values.tolist() == [
        [6, 1, 1], [30, 8, 3], [1, 10, 3]]
    karthiga = out[out["uid"] == 2].set_index("item_id")
    assert karthiga.index[0] == 21 and set(karthiga.index[1:3]) == {59, 210} and list(karthiga.index[3:]) == [120, 74]
    assert np.isnan(karthiga.loc[210, "rating"]) and karthiga.loc[210, "feedback"] == 2  # score 0: unrated -> Like


@pytest.mark.parametrize("scheme, bins, n_bins, first", [
    ("month", [1, 1, 2, 13], 13, "2019-12"),
    ("quarter", [1, 1, 2, 5], 5, "2019-Q4"),
    ("year", [1, 1, 2, 2], 2, "2019"),
])
def test_calendar_time_bins(scheme, bins, n_bins, first):
    stamps = np.array(["2019-12-01", "2019-12-31T23:59:59", "2020-01-01", "2020-12-15"], dtype="datetime64[s]")
    got, info = prep.time_bins(stamps.astype(np.int64), scheme)
    assert got.tolist() == bins and got.dtype == np.int16
    assert info["n_bins"] == n_bins and info["first_period"] == first and info["scheme"] == scheme


# ------------------------------------------------------------------------------------------ contract

def check_contract(folder: Path) -> None:
    items = pq.read_table(folder / "items.parquet")
    interactions = pq.read_table(folder / "interactions.parquet")
    sequences = pq.read_table(folder / "sequences.parquet")
    assert items.schema.equals(prep.ITEMS_SCHEMA) and interactions.schema.equals(prep.INTERACTIONS_SCHEMA)
    assert sequences.schema.equals(prep.SEQUENCES_SCHEMA)
    meta = json.loads((folder / "meta.json").read_text())
    n_items, n_users = meta["n_items"], meta["n_users"]
    assert items.column("iid").to_pylist() == list(range(1, n_items + 1))
    assert items.column("item_id").to_numpy().tolist() == sorted(set(items.column("item_id").to_pylist()))
    frame = interactions.to_pandas()
    assert len(frame) == meta["n_interactions"]
    assert frame["iid"].between(1, n_items).all() and frame["iid"].nunique() == n_items  # iid 0 unused
    assert frame["uid"].is_monotonic_increasing and sorted(frame["uid"].unique()) == list(range(n_users))
    assert (frame.groupby("uid")["position"].agg(lambda p: list(p) == list(range(len(p))))).all()
    assert frame["feedback"].between(1, 3).all()
    assert frame["time_bin"].between(1, meta["time_bins"]["n_bins"]).all()
    assert not frame.duplicated(["uid", "iid"]).any()
    if meta["has_timestamps"]:
        assert (frame.groupby("uid")["timestamp"].agg(lambda t: t.is_monotonic_increasing)).all()
    iid_map_bytes = (folder / "iid_map.json").read_bytes()
    assert hashlib.sha256(iid_map_bytes).hexdigest() == meta["iid_map_sha256"]
    iid_map = json.loads(iid_map_bytes)
    assert iid_map == dict(zip(map(str, items.column("item_id").to_pylist()), items.column("iid").to_pylist()))
    assert list(iid_map.values()) == list(range(1, n_items + 1))  # keys in iid order
    dataset = load_dataset(folder)
    assert dataset.sequences.n_users == n_users and dataset.n_items == n_items
    assert np.array_equal(dataset.sequences.iid, frame["iid"].to_numpy())
    assert np.array_equal(dataset.sequences.feedback, frame["feedback"].to_numpy())
    assert np.array_equal(dataset.sequences.time_bin, frame["time_bin"].to_numpy())
    assert np.array_equal(dataset.user_ids, frame.groupby("uid")["user_id"].first().to_numpy())


def test_contract_synthetic(processed_sample):
    check_contract(processed_sample)
    meta = json.loads((processed_sample / "meta.json").read_text())
    assert meta["synthetic"] is True and meta["source"] == "synthetic" and meta["generator"]["seed"] == 7
    assert meta["has_timestamps"] and meta["time_bins"]["scheme"] == "month" and meta["time_bins"]["n_bins"] > 12
    assert meta["order_is_time"] is True and meta["ties"]["seed"] == 0


def test_contract_and_end_to_end_on_the_shipped_sample(processed_anime):
    check_contract(processed_anime)
    meta = json.loads((processed_anime / "meta.json").read_text())
    assert meta["synthetic"] is False and meta["has_timestamps"] is False and meta["order_is_time"] is False
    assert meta["files"][1]["path"] == "data/sample/rating_sample.csv.gz"
    assert meta["files"][1]["sha256"] == "00e8714f06e130028ff96b3995c3aef5d74cdc239da0286e98f8f62429a66a45"
    assert meta["files"][1]["rows"] == 97_470 and meta["n_users"] == 956
    assert meta["n_interactions"] == 97_470 - meta["dropped"]["rare_item_rows"]
    # without timestamps the file order holds: item_id ascending within each user
    frame = pd.read_parquet(processed_anime / "interactions.parquet").merge(
        pd.read_parquet(processed_anime / "items.parquet")[["iid", "item_id"]], on="iid")
    frame = frame.sort_values(["uid", "position"])
    assert frame.groupby("uid")["item_id"].agg(lambda a: a.is_monotonic_increasing).all()
    # every kept item has at least 10 users; -1 ratings were kept as Like with NaN ratings
    assert frame.groupby("iid")["uid"].nunique().min() >= 10
    unrated = frame["rating"].isna()
    assert unrated.sum() == meta["unrated_kept"] > 0 and (frame.loc[unrated, "feedback"] == 2).all()


@pytest.mark.skipif(not ML100K.exists(), reason="../shared/data/ml-100k not present")
def test_ml100k_counts_and_order(tmp_path):
    cfg = prep.PrepConfig(source="movielens", ratings=ML100K, out=tmp_path / "out", artifacts=tmp_path / "out",
                          min_item_users=0)
    processed = prep.run(cfg)
    meta = processed.meta
    assert (meta["n_users"], meta["n_items"], meta["n_interactions"]) == (943, 1_682, 100_000)
    assert meta["time_bins"]["n_bins"] == 8 and meta["time_bins"]["first_period"] == "1997-09"
    check_contract(tmp_path / "out")
    raw = pd.read_csv(ML100K / "ml-100k.inter.gz", sep="\t")
    raw.columns = ["user_id", "item_id", "rating", "timestamp"]
    # by time; within a tie (same user, same second) the seeded shuffle's order, so compare sorted within ties
    expected = raw.sort_values(["user_id", "timestamp", "item_id"])
    got = events(processed).sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    assert got["item_id"].tolist() == expected["item_id"].tolist()
    assert got["feedback"].tolist() == np.select([expected["rating"] <= 2, expected["rating"] <= 4], [1, 2], 3).tolist()
    assert meta["order_is_time"] is True and meta["ties"]["n_tied_events"] == int(
        raw.duplicated(["user_id", "timestamp"], keep=False).sum())


# ------------------------------------------------------------------------------------------ writing

def test_reruns_are_byte_identical(tmp_path):
    items, ratings = raw_files(tmp_path, [(u, a, 1 + (u * a) % 10, u * 1000 + a) for u in range(1, 6)
                                          for a in (10, 20, 30)])
    digests = []
    for name in ("a", "b"):
        out = tmp_path / name
        prep.run(prep.PrepConfig(items=items, ratings=ratings, out=out, artifacts=out, min_item_users=1))
        prep.run(prep.PrepConfig(items=items, ratings=ratings, out=out, artifacts=out, min_item_users=1))
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())})
    assert digests[0] == digests[1] and len(digests[0]) == 5


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a processed-data folder"):
        build_and_write = build(tmp_path, [(1, 10, 8, 1)])
        prep.write(build_and_write, foreign, tmp_path / "art")
    assert (foreign / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------------------------------ CLI

def run_cli(args, capsys) -> tuple[int, str, str]:
    code = _cli().main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_the_default_thresholds_and_the_same_ones_passed_write_the_same_files(tmp_path, capsys):
    """(make data passes none, the DVC pipeline passes the defaults: dvc status must see no change)"""
    items, ratings = raw_files(tmp_path, [(u, a, 1 + (u * a) % 10, u * 1000 + a) for u in range(1, 6)
                                          for a in (10, 20, 30)])
    digests = []
    for name, thresholds in (("default", []), ("passed", ["--dislike-max", "4", "--like-max", "7"])):
        out = tmp_path / name
        code, _, _ = run_cli(["--items", items, "--ratings", ratings, "--out", out, "--artifacts", out,
                              "--min-item-users", "1", *thresholds], capsys)
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())})
        assert code == 0
    assert digests[0] == digests[1]


def test_cli_bad_input_exits_2_and_keeps_previous_output(tmp_path, capsys):
    items, ratings = raw_files(tmp_path, [(1, 10, 8, 1), (1, 20, 3, 2), (2, 10, 9, 3)])
    out, art = tmp_path / "out", tmp_path / "art"
    code, stdout, _ = run_cli(["--items", items, "--ratings", ratings, "--out", out, "--artifacts", art,
                               "--min-item-users", "1"], capsys)
    assert code == 0 and "users 2  items 2  interactions 3" in stdout
    before = {p: p.read_bytes() for p in [*out.iterdir(), art / "iid_map.json"]}
    bad = [("user_id,anime_id,rating,timestamp\n1,10,8,1\n1,20,x,2\n", "line 3, column 'rating': value 'x'"),
           ("user_id,anime_id,rating,timestamp\n1,10,8,1\n1,20,3", "line 3: value '1,20,3': expected 4 columns"),
           ("user_id,anime,rating\n1,10,8\n", "line 1: missing column 'anime_id'"),
           ("user_id,anime_id,rating\n1,10,12\n", "line 2, column 'rating': value '12': out of range")]
    for text, expected in bad:
        ratings.write_text(text)
        code, stdout, stderr = run_cli(["--items", items, "--ratings", ratings, "--out", out, "--artifacts", art,
                                        "--min-item-users", "1"], capsys)
        assert code == 2 and stdout == ""
        assert stderr == f"error: {ratings}: {expected}" + stderr.split(expected, 1)[1]
        assert stderr.count("\n") == 1 and expected in stderr
    code, _, stderr = run_cli(["--ratings", tmp_path / "missing.csv", "--out", out, "--artifacts", art], capsys)
    assert code == 2 and stderr == f"error: {tmp_path / 'missing.csv'}: file not found\n"
    ratings.write_text("user_id,anime_id,rating\n1,10,8\n")
    code, _, stderr = run_cli(["--items", items, "--ratings", ratings, "--out", out, "--artifacts", art], capsys)
    assert code == 2 and "no interactions left after filtering (min_item_users=10" in stderr
    assert {p: p.read_bytes() for p in before} == before and sorted(out.iterdir()) == sorted(
        p for p in before if p.parent == out)
    assert hidden(tmp_path) == [".out.lock", os.readlink(out)]  # no temp folders left: the lock, the current version


def test_cli_defaults_process_the_shipped_sample(tmp_path, capsys):
    code, stdout, _ = run_cli(["--out", tmp_path / "p", "--artifacts", tmp_path / "a"], capsys)
    assert code == 0
    assert "users 956  items 2,000" in stdout and "feedback: Dislike" in stdout and "sequence length" in stdout
    assert (tmp_path / "a" / "iid_map.json").read_bytes() == (tmp_path / "p" / "iid_map.json").read_bytes()
    args = _cli().parse_args([])
    assert args.out == prep.DEFAULT_OUT and args.artifacts == prep.DEFAULT_ARTIFACTS and args.source == "anime"


def test_cli_warns_about_unknown_items(tmp_path, capsys):
    items, ratings = raw_files(tmp_path, [(1, 10, 8, 1), (1, 123, 8, 2), (2, 10, 5, 3)])
    code, _, stderr = run_cli(["--items", items, "--ratings", ratings, "--out", tmp_path / "o",
                               "--artifacts", tmp_path / "o", "--min-item-users", "1"], capsys)
    assert code == 0
    assert stderr == (f"warning: {ratings}: 1 rating rows name an item id absent from the catalogue (e.g. 123); "
                      "dropped\n")
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert meta["dropped"]["unknown_item_rows"] == 1 and meta["n_interactions"] == 2


@pytest.mark.skipif(not ML100K.exists(), reason="../shared/data/ml-100k not present")
def test_cli_movielens_default_path(tmp_path, capsys):
    code, stdout, _ = run_cli(["--source", "movielens", "--min-item-users", "0", "--time-bin", "year",
                               "--out", tmp_path / "o", "--artifacts", tmp_path / "o"], capsys)
    assert code == 0 and "users 943  items 1,682  interactions 100,000" in stdout and "year x 2" in stdout


def test_cli_mal_source(tmp_path, capsys):
    code, stdout, _ = run_cli(["--source", "mal", "--ratings", MAL_LIST, "--min-item-users", "1",
                               "--out", tmp_path / "o", "--artifacts", tmp_path / "o"], capsys)
    assert code == 0 and "users 3  items 10  interactions 12" in stdout and "plan_to_watch_rows 2" in stdout
    code, _, stderr = run_cli(["--source", "mal", "--out", tmp_path / "o", "--artifacts", tmp_path / "o"], capsys)
    assert code == 2 and stderr.startswith("error: --source mal needs --ratings") and stderr.count("\n") == 1


def test_cli_help_documents_the_rules(capsys):
    with pytest.raises(SystemExit):
        _cli().parse_args(["--help"])
    text = capsys.readouterr().out
    for word in ("--unrated", "--min-item-users", "--time-bin", "--dislike-max", "--tie-seed", "order_is_time",
                 "duplicates", "ordering", "exits 2", "plan to watch", "my_last_updated", "sorted (code point)"):
        assert word in text


def test_parquet_columns_hold_the_contract_types(processed_sample):
    table = pq.read_table(processed_sample / "interactions.parquet")
    assert table.schema.field("feedback").type == pa.int8() and table.schema.field("time_bin").type == pa.int16()
    assert table.column("timestamp").null_count == 0


def test_benchmark_quick_smoke(tmp_path):
    result = tmp_path / "prep_quick.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "prep.py"), "--quick", "--repeats", "1",
                    "--out", str(result)], check=True, capture_output=True, timeout=120)
    figures = json.loads(result.read_text())
    assert figures["quick"] and figures["rows"] > 50_000 and figures["wall_s_median"] > 0
    assert 0 < figures["peak_rss_gib_max"] < 3


# ------------------------------------------------------------------------------------------ failures

def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def prep_args(items, ratings, out, art) -> list[str]:
    return ["--items", str(items), "--ratings", str(ratings), "--out", str(out), "--artifacts", str(art),
            "--min-item-users", "1"]


@pytest.mark.parametrize("stamp, expected", [
    ("9223372036854775807", "value '9223372036854775807': out of range (expected Unix seconds from 1970 to 2099)"),
    ("-5", "value '-5': out of range (expected Unix seconds from 1970 to 2099)"),
    ("1500000000000", "value '1500000000000': out of range (expected Unix seconds from 1970 to 2099; it looks like "
                      "milliseconds: convert the column to seconds)"),
    ("1e20", "value '1e20': not an integer"),
])
def test_implausible_timestamps_name_file_line_and_value(tmp_path, capsys, stamp, expected):
    items, ratings = raw_files(tmp_path, [(1, 10, 8, 1500000000), (1, 20, 3, stamp)])
    code, _, stderr = run_cli(prep_args(items, ratings, tmp_path / "out", tmp_path / "art"), capsys)
    assert code == 2 and stderr == f"error: {ratings}: line 3, column 'timestamp': {expected}\n"


def test_implausible_movielens_and_mal_timestamps(tmp_path):
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,A,Drama\n")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4,964982703\n1,1,4,1e20\n")
    with pytest.raises(DataError, match=r"ratings\.csv: line 3, column 'timestamp': value '100000000000000000000': "
                                        r"out of range"):
        prep.load_raw(prep.PrepConfig(source="movielens", ratings=tmp_path / "ratings.csv"))
    mal = tmp_path / "list.csv"
    mal.write_text("username,anime_id,my_score,my_status,my_last_updated\na,1,8,2,0\na,6,8,2,9999-01-01 00:00:00\n")
    with pytest.raises(DataError, match=r"line 3, column 'my_last_updated': value '9999-01-01 00:00:00': out of range"):
        prep.load_raw(prep.PrepConfig(source="mal", ratings=mal))


def test_new_events_far_in_the_future_fall_in_the_last_bin():
    info = {"scheme": "month", "n_bins": 3, "first_period": "2019-01"}
    assert prep.time_bins_of(np.array([1.6e9, 1e20, 9.2e18]), info).tolist() == [3, 3, 3]


def test_an_unwritable_artifacts_folder_leaves_out_untouched(tmp_path, capsys):
    """Defect: --out was swapped in before iid_map.json failed to write."""
    items, ratings = raw_files(tmp_path, [(1, 10, 8, 1), (1, 20, 3, 2), (2, 10, 9, 3)])
    out, art = tmp_path / "out", tmp_path / "art"
    assert run_cli(prep_args(items, ratings, out, art), capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    ratings.write_text("user_id,anime_id,rating,timestamp\n1,10,8,1\n")  # a different output
    (tmp_path / "plain").write_text("")
    code, stdout, stderr = run_cli(prep_args(items, ratings, out, tmp_path / "plain" / "art"), capsys)
    assert code == 2 and stdout == "" and stderr.startswith(f"error: cannot write {tmp_path / 'plain' / 'art'}")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert (art / "iid_map.json").read_bytes() == before["iid_map.json"]
    assert hidden(tmp_path) == [".out.lock", os.readlink(out)]  # the unused version folder is gone


def test_a_full_disk_names_the_file_and_keeps_the_previous_output(tmp_path, capsys, monkeypatch):
    items, ratings = raw_files(tmp_path, [(1, 10, 8, 1), (1, 20, 3, 2), (2, 10, 9, 3)])
    out, art = tmp_path / "out", tmp_path / "art"
    assert run_cli(prep_args(items, ratings, out, art), capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(table, where, **_):
        Path(where).write_bytes(b"PAR1 half")
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(prep.pq, "write_table", full)
    code, _, stderr = run_cli(prep_args(items, ratings, out, art), capsys)
    assert code == 2 and stderr.startswith("error: cannot write ") and ".parquet: Error writing bytes" in stderr
    assert stderr.count("\n") == 1 and "No space left on device" in stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and hidden(tmp_path) == [".out.lock",
                                                                                              os.readlink(out)]


def run_killed_at(step: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "code"), "NOSTRADE_KILL_AT": step}
    return subprocess.run([sys.executable, str(REPO / "make_processed_data.py"), "--quiet", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def consistent(out: Path, art: Path) -> str:
    """The output is whole, and the artifacts' iid map is the one its meta.json names; returns that hash."""
    meta = json.loads((out / "meta.json").read_text())
    assert hashlib.sha256((art / "iid_map.json").read_bytes()).hexdigest() == meta["iid_map_sha256"]
    load_dataset(out)
    return meta["iid_map_sha256"]


@pytest.mark.parametrize("step, new", [("prep:version-written", False), ("prep:before-commit", False),
                                       ("prep:committed", True)])
def test_a_kill_at_any_step_leaves_old_or_new_whole_and_the_next_run_cleans_up(tmp_path, step, new):
    """Defect: a SIGKILL between the two renames of the old swap left no processed folder (or a mismatched map)."""
    items, ratings = raw_files(tmp_path, [(1, 10, 8, 1), (1, 20, 3, 2), (2, 10, 9, 3)])
    out, art = tmp_path / "out", tmp_path / "art"
    args = prep_args(items, ratings, out, art)
    assert run_killed_at("", args).returncode == 0
    old = consistent(out, art)
    ratings.write_text("user_id,anime_id,rating,timestamp\n1,10,8,1\n1,30,8,2\n")  # another iid map
    killed = run_killed_at(step, args)
    assert killed.returncode == -signal.SIGKILL
    assert consistent(out, art) == old if not new else consistent(out, art) != old
    assert len(hidden(tmp_path)) > 2  # the killed run's leftovers
    assert run_killed_at("", args).returncode == 0
    assert consistent(out, art) != old and hidden(tmp_path) == [".out.lock", os.readlink(out)]


def test_a_plain_folder_from_older_code_is_restored_after_a_kill_while_parked(tmp_path):
    items, ratings = raw_files(tmp_path, [(1, 10, 8, 1), (1, 20, 3, 2), (2, 10, 9, 3)])
    out, art = tmp_path / "out", tmp_path / "art"
    args = prep_args(items, ratings, out, art)
    assert run_killed_at("", args).returncode == 0
    legacy = tmp_path / "legacy"
    os.replace(os.path.realpath(out), legacy)
    out.unlink()
    art.joinpath("iid_map.json").unlink()
    os.replace(legacy, out)  # what older code wrote: a plain folder (and a plain artifacts/iid_map.json)
    (art / "iid_map.json").write_bytes((out / "iid_map.json").read_bytes())
    (tmp_path / ".out.tmp-abc123").mkdir()  # older code's temporary folder, left by a kill
    assert run_killed_at("prep:parked", args).returncode == -signal.SIGKILL
    assert not out.exists()  # the window: the folder is parked, the link not made yet
    assert run_killed_at("", args).returncode == 0  # restored, then replaced as usual
    assert out.is_symlink() and consistent(out, art) and hidden(tmp_path) == [".out.lock", os.readlink(out)]
    # the older code's own leftover of the same window: the folder parked in .out.old-*/out
    parked = tmp_path / ".out.old-abc"
    parked.mkdir()
    os.replace(os.path.realpath(out), parked / "out")
    out.unlink()
    prep._recover(out)
    assert (out / "meta.json").is_file() and not (parked / "out").exists()


def test_outputs_are_readable_by_other_users(tmp_path):
    items, ratings = raw_files(tmp_path, [(1, 10, 8, 1), (1, 20, 3, 2), (2, 10, 9, 3)])
    before = os.umask(0o022)
    try:
        prep.run(prep.PrepConfig(items=items, ratings=ratings, out=tmp_path / "out", artifacts=tmp_path / "art",
                                 min_item_users=1))
    finally:
        os.umask(before)
    assert stat.S_IMODE(os.stat(tmp_path / "out").st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()} == {0o644}
