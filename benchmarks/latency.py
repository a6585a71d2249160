"""Serving latency of predict.Recommender.recommend on the full anime catalogue, on one CPU thread.

    python benchmarks/latency.py --out artifacts/bench/latency.json [--calls 2000] [--rows served ranker ...] [--rounds 10]
    python benchmarks/latency.py --checkpoint PT --data DIR --out FILE.json      (one trained model)

With no --checkpoint it times what is served: the default model of the embedded sample (checkpoints/model.pt on
data/processed, prepared and trained first where absent, as `make train`: --model auto's choice, its kind in the
JSON), the headline; then labelled extra rows (``--rows``): ``ranker`` (checkpoints/ranker.pt, `--model ranker`
with auto's generators, trained where absent), ``sasrec`` (checkpoints/sasrec.pt, `--model sasrec` on the sample:
the set model, as the sample's order is not time; trained where absent), and the harder ``sasrec-set`` and
``sasrec-time`` (a random-weight SASRec of the default config with every one of the 12,294 catalogue titles in
its vocabulary, so that the model, its products and the dislike penalty span the whole catalogue, not the
sample's 2,000 trained titles; as for data whose order is not time, the set model, and is; latency does not
depend on the weights; co-watch statistics from the shipped ratings slice). Each call scores a different
50-event history (titles drawn by popularity, feedback 10% Dislike / 45% Like / 45% Love) with k=20 and
explanations.

Three timings per call, each with its own p50/p99 of wall time (and of the calling thread's CPU time,
which other processes on a shared machine inflate less):
- ``recommend``: scores, blend, top-k, explanations (similar picks, co-watch counts, sentences);
- ``recommend+to_dict``: plus the JSON-ready answer the HTTP service sends (the headline p50_ms / p99_ms);
- ``recommend+frames+graph``: plus the pandas DataFrames and the networkx graph the Streamlit app shows.
Then offline batch scoring (recommend_batch, no explanations) of many histories, in users per second.

Last, with several rows, the rows take turns (``--rounds``, 10 by default): in each round every row makes its share
of --calls recommend+to_dict calls, one row after another, so that all rows meet the same spells of load on a shared
host (where one row's own run can land in a slow minute: the same model has timed 2.9 and 4.3 ms in one file).
The JSON's ``interleaved`` holds each row's p50 and p99 over those calls and every round's p50.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import predict
import served
from nostrade.atomic import write_json
from nostrade.dataset import Dataset
from nostrade.sasrec_net import SASRec, SASRecConfig
from nostrade.prep import feedback_of
from nostrade.sequences import LIKE, Sequences
from nostrade.sources import read_anime

REPO = Path(__file__).resolve().parents[1]

ROWS = ("served", "ranker", "sasrec", "sasrec-set", "sasrec-time")
ITEMS = REPO / "data" / "sample" / "anime.csv.gz"
RATINGS = REPO / "data" / "sample" / "rating_sample.csv.gz"


def full_catalogue_recommender(seed: int = 0, order_is_time: bool = False) -> predict.Recommender:
    """Every catalogue title in the vocabulary (iid = 1 + catalogue position), a random-weight SASRec."""
    raw = read_anime(ITEMS, RATINGS)
    items = raw.items.reset_index(drop=True)
    items.insert(0, "iid", np.arange(1, len(items) + 1, dtype=np.int64))
    ratings = raw.ratings.sort_values("user_id", kind="stable")  # file order within a user, as prep does
    iid = pd.Index(items["item_id"]).get_indexer(ratings["item_id"]) + 1
    rating = ratings["rating"].to_numpy(np.float64)
    feedback = np.where(rating == raw.unrated_value, LIKE, feedback_of(rating, *raw.feedback_thresholds))
    users, offsets = np.unique(ratings["user_id"].to_numpy(), return_index=True)
    sequences = Sequences(np.append(offsets, len(ratings)).astype(np.int64), iid.astype(np.int64),
                          feedback.astype(np.int64), np.ones(len(iid), dtype=np.int64))
    meta = {"source": "latency benchmark (every catalogue title in the vocabulary)", "has_timestamps": False,
            "order_is_time": order_is_time,
            "time_bins": {"scheme": "none", "n_bins": 1}, "iid_map_sha256": "none", "n_items": len(items)}
    torch.manual_seed(seed)
    dataset = Dataset(items, sequences, users, meta)
    model = SASRec(SASRecConfig(n_items=len(items)).for_order(dataset.order_is_time)).eval()
    return predict.Recommender(model, dataset)


def histories(rec: predict.Recommender, n: int, length: int, seed: int) -> list[list[predict.Event]]:
    rng = np.random.default_rng(seed)
    members = rec.catalogue["members"].fillna(0).to_numpy(np.float64) + 1.0
    ids = rec.catalogue["item_id"].to_numpy()
    out = []
    for _ in range(n):
        picked = rng.choice(ids, size=length, replace=False, p=members / members.sum())
        feedback = rng.choice([1, 2, 3], size=length, p=[0.1, 0.45, 0.45])
        out.append([predict.Event(int(a), int(f)) for a, f in zip(picked, feedback)])
    return out


def percentiles(seconds: list[float], cpu_seconds: list[float]) -> dict:
    ms, cpu = np.asarray(seconds) * 1000, np.asarray(cpu_seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "max_ms": float(ms.max()),
            "cpu_p50_ms": float(np.percentile(cpu, 50)), "cpu_p99_ms": float(np.percentile(cpu, 99))}


def recommender(row: str, seed: int) -> predict.Recommender:
    """The model of a row: a trained checkpoint (made where absent) or a random-weight full-catalogue SASRec."""
    if row.startswith("sasrec-"):
        return full_catalogue_recommender(seed, order_is_time=row == "sasrec-time")
    trained = {"served": served.default_model, "ranker": served.ranker_model, "sasrec": served.sasrec_model}[row]
    return predict.Recommender.load(*trained())


def time_calls(rec: predict.Recommender, args: argparse.Namespace) -> dict:
    """p50/p99 of each variant over --calls calls, and the batch throughput."""
    pool = histories(rec, 200, args.history, args.seed)
    variants = {
        "recommend": lambda h: rec.recommend(h, k=args.k),
        "recommend+to_dict": lambda h: rec.recommend(h, k=args.k).to_dict(),
        "recommend+frames+graph": lambda h: (lambda r: (r.items, r.explanations, r.graph))(rec.recommend(h, k=args.k)),
    }
    for h in pool[:min(50, args.calls)]:  # warm-up: allocator, lazy imports
        for call in variants.values():
            call(h)
    timings, load_before = {}, os.getloadavg()
    for name, call in variants.items():
        seconds, cpu_seconds = [], []
        for i in range(args.calls):
            h = pool[i % len(pool)]
            t, c = time.perf_counter(), time.thread_time()
            call(h)
            seconds.append(time.perf_counter() - t)
            cpu_seconds.append(time.thread_time() - c)
        timings[name] = percentiles(seconds, cpu_seconds)
        print(f"  {name:24s} p50 {timings[name]['p50_ms']:6.2f} ms   p99 {timings[name]['p99_ms']:6.2f} ms   "
              f"mean {timings[name]['mean_ms']:6.2f} ms   (CPU time p50 {timings[name]['cpu_p50_ms']:.2f} ms, "
              f"p99 {timings[name]['cpu_p99_ms']:.2f} ms; {args.calls} calls)")
    load_after = os.getloadavg()
    batch = histories(rec, args.batch_users, args.history, args.seed + 1)
    t = time.perf_counter()
    scored = rec.recommend_batch(batch, k=args.k, batch_size=args.batch_size)
    batch_seconds = time.perf_counter() - t
    assert scored["user"].nunique() == len(batch)
    print(f"  batch: {len(batch)} users x {args.history} events, k={args.k}, batch size {args.batch_size}: "
          f"{batch_seconds:.2f} s = {len(batch) / batch_seconds:,.0f} users/s (no explanations); load average "
          f"(1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs")
    headline = timings["recommend+to_dict"]
    return {"p50_ms": headline["p50_ms"], "p99_ms": headline["p99_ms"], "cpu_p50_ms": headline["cpu_p50_ms"],
            "cpu_p99_ms": headline["cpu_p99_ms"], "catalogue_items": len(rec.catalogue),
            "vocabulary_items": int(rec.dataset.n_items), "variants": timings,
            "batch": {"users": len(batch), "batch_size": args.batch_size, "seconds": batch_seconds,
                      "users_per_s": len(batch) / batch_seconds},
            "model": rec.describe()["model"], "load_average_before": load_before, "load_average_after": load_after}


def interleaved(recs: dict[str, predict.Recommender], args: argparse.Namespace) -> dict:
    """recommend+to_dict of every row, the rows taking turns: ``--rounds`` rounds in which each row makes
    --calls / --rounds calls, so that every row meets the same spells of a shared host's load. Per row: p50 and p99
    over all its calls, and each round's p50."""
    per_round = max(args.calls // args.rounds, 1)
    pools = {row: histories(rec, 200, args.history, args.seed) for row, rec in recs.items()}
    seconds = {row: [] for row in recs}
    for r in range(args.rounds):
        for row, rec in recs.items():
            for i in range(r * per_round, (r + 1) * per_round):
                h = pools[row][i % len(pools[row])]
                t = time.perf_counter()
                rec.recommend(h, k=args.k).to_dict()
                seconds[row].append(time.perf_counter() - t)
    out = {}
    for row, times in seconds.items():
        ms = np.asarray(times) * 1000
        rounds = np.median(ms.reshape(args.rounds, per_round), axis=1)
        out[row] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                    "round_p50_ms": [float(x) for x in rounds]}
        print(f"  {row:12s} p50 {out[row]['p50_ms']:6.2f} ms   p99 {out[row]['p99_ms']:6.2f} ms   rounds' p50 "
              f"{rounds.min():.2f}-{rounds.max():.2f} ms")
    return {"rounds": args.rounds, "calls_per_round": per_round, "rows": out}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench" / "latency.json")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per variant")
    parser.add_argument("--history", type=int, default=50, help="events per history")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--batch-users", type=int, default=2000, help="histories for the batch-throughput run")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 calls, 50 batch users")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS),
                        help="models to time without --checkpoint; the first is the headline (default: all)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="then, with several rows, the rows again taking turns in this many rounds (1: not at all)")
    parser.add_argument("--checkpoint", type=Path, help="time this trained model alone instead; with --data")
    parser.add_argument("--data", type=Path, help="the processed folder the checkpoint was trained on")
    args = parser.parse_args(argv)
    if (args.checkpoint is None) != (args.data is None):
        parser.error("--checkpoint and --data go together")
    if args.quick:
        args.calls, args.batch_users = 20, 50

    if args.rounds < 1:
        parser.error(f"--rounds: {args.rounds} is not a positive integer")
    predict.use_threads(1)  # PyTorch and the BLAS under NumPy
    rows, recs = {}, {}
    for row in ([str(args.checkpoint)] if args.checkpoint else args.rows):
        print(f"{row}:", flush=True)
        started = time.perf_counter()
        rec = predict.Recommender.load(args.checkpoint, args.data) if args.checkpoint else recommender(row, args.seed)
        load_seconds = time.perf_counter() - started
        rows[row] = {**time_calls(rec, args), "load_seconds": load_seconds}
        if row.startswith("sasrec-"):
            rows[row]["model"]["weights"] = "random (latency does not depend on them)"
        if args.rounds > 1:  # kept for the turns
            recs[row] = rec
    taking_turns = None
    if len(recs) > 1:
        print(f"the rows taking turns, {args.rounds} rounds (recommend+to_dict):", flush=True)
        taking_turns = interleaved(recs, args)
    headline = next(iter(rows))
    result = {
        "p50_ms": rows[headline]["p50_ms"], "p99_ms": rows[headline]["p99_ms"], "kind": rows[headline]["model"]["kind"],
        "headline": f"{headline}: recommend+to_dict", "targets": {"p50_ms": 3.0, "p99_ms": 10.0},
        "history_length": args.history, "k": args.k, "explanations": True, "calls": args.calls,
        "threads": torch.get_num_threads(), "rows": rows, "interleaved": taking_turns,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch": torch.__version__},
        "quick": args.quick,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
