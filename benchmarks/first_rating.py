"""First rating: how well each serving path finds a person's next title from one (or a few) rated titles.

    python benchmarks/first_rating.py --data data/processed --out artifacts/bench/first_rating.json
        [--models ease] [--sizes 1,2,3] [--seeds 0,1,2] [--alpha 0.2]

The data set's split (EVAL.md, nostrade.split); each model is fitted on the training part. Per seed and history
size n, every test case (next item: the held-out target, whatever its feedback) whose history holds at least n
Like/Love events has its history cut to n of them, drawn at random (seeded), in their original order: what a
person who has just rated n titles gives the demo. Each cut history is ranked two ways over the full catalogue
(the cut history's titles excluded, pessimistic ties: nostrade.evaluate), both through nostrade.scoring (what is
served):
- ``model``: the served path (model + genre blend at --alpha, "sequence+genre");
- ``cold_start``: the genre + popularity path ("genre+popularity"), as served for titles the model does not know.
Writes {"rows": {model: {size: {path: {"hr@10", "ndcg@10", "std": ...}}}}, "n_cases": ..., ...}: mean ± std
over seeds; ``better`` names the path with the higher NDCG@10 per model and size (what COLD_START_MIN_EVENTS
serves).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nostrade.atomic import write_json
from nostrade.dataset import load_dataset
from nostrade.evaluate import metrics_from_ranks, rank_cases
from nostrade.registry import make_model
from nostrade.report import mean_std
from nostrade.scoring import CatalogueHistory, Scoring
from nostrade.sequences import DISLIKE, Sequences
from nostrade.split import EvalCases, split_of

METRICS = ("hr@10", "ndcg@10")
PATHS = ("model", "cold_start")


def cut_cases(cases: EvalCases, size: int, seed: int) -> EvalCases:
    """The cases with at least ``size`` Like/Love events, each history cut to ``size`` of them (seeded draw,
    original order kept)."""
    history = cases.history
    liked = history.feedback != DISLIKE
    owner = history.row_of_event()
    n_liked = np.bincount(owner[liked], minlength=history.n_users)
    users = np.flatnonzero(n_liked >= size)
    key = np.random.default_rng(seed).random(len(liked))
    key[~liked] = np.inf
    order = np.lexsort((key, owner))  # per user: liked events in a random order, then the rest
    rank_in_user = np.empty(len(order), np.int64)
    rank_in_user[order] = np.arange(len(order)) - history.offsets[owner[order]]
    keep = (rank_in_user < size) & liked & np.isin(owner, users)
    chosen = history.select(keep).take(users)
    return EvalCases(cases.users[users], chosen, cases.target[users], cases.target_feedback[users])


def cold_start_scorer(scoring: Scoring, alpha: float):
    """The genre + popularity path for every history: its titles given as ones the model does not know."""
    def score(history: Sequences) -> torch.Tensor:
        out = np.zeros((history.n_users, scoring.n_items + 1), dtype=np.float32)
        unknown = [CatalogueHistory(h.rows, h.feedback, h.time_bin, np.zeros_like(h.iid), h.seen_rows)
                   for h in scoring.histories_of(history)]
        out[:, 1:] = scoring.scores(unknown, alpha).final[:, :scoring.n_items]
        return torch.from_numpy(out)
    return score


def measure(scoring: Scoring, cases: EvalCases, alpha: float, n_items: int) -> dict:
    scorers = {"model": scoring.scorer(alpha), "cold_start": cold_start_scorer(scoring, alpha)}
    return {path: {m: v for m, v in metrics_from_ranks(rank_cases(scorers[path], cases, n_items)).items()
                   if m in METRICS} for path in PATHS}


def summary(per_seed: list[dict]) -> dict:
    """Per model, size and path: mean and std over seeds; and the better path per model and size."""
    rows = {}
    for model in per_seed[0]["rows"]:
        rows[model] = {}
        for size in per_seed[0]["rows"][model]:
            cell = {}
            for path in PATHS:
                values = {m: [s["rows"][model][size][path][m] for s in per_seed] for m in METRICS}
                stats = {m: mean_std(v) for m, v in values.items()}
                cell[path] = {**{m: round(s[0], 4) for m, s in stats.items()},
                              "std": {m: round(s[1], 4) for m, s in stats.items()}}
            cell["better"] = max(PATHS, key=lambda p: cell[p]["ndcg@10"])
            cell["n_cases"] = per_seed[0]["rows"][model][size]["n_cases"]
            rows[model][size] = cell
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="processed folder (make_processed_data.py)")
    parser.add_argument("--out", type=Path, required=True, help="results JSON (written atomically)")
    parser.add_argument("--models", default="ease",
                        help="comma-separated served models (nostrade.registry names: ease, sasrec, ranker)")
    parser.add_argument("--sizes", default="1,2,3", help="history sizes (Like/Love titles kept)")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the cut (and of seeded models)")
    parser.add_argument("--alpha", type=float, default=0.2, help="the served genre share (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        seeds = [int(s) for s in args.seeds.split(",")]
        if min(sizes) < 1:
            raise ValueError(f"--sizes: {args.sizes!r} holds a size under 1")
        dataset = load_dataset(args.data)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    split, started, per_seed = split_of(dataset), time.perf_counter(), []
    for seed in seeds:
        rows = {}
        for name in args.models.split(","):
            model = make_model(name, seed=seed).fit(dataset, split.train)
            scoring = Scoring.over(model, dataset.items, dataset.n_items)
            rows[name] = {}
            for size in sizes:
                cases = cut_cases(split.test, size, seed)
                rows[name][str(size)] = {**measure(scoring, cases, args.alpha, dataset.n_items), "n_cases": len(cases)}
                print(f"seed {seed} {name} n={size}: " + ", ".join(
                    f"{p} NDCG@10 {rows[name][str(size)][p]['ndcg@10']:.4f}" for p in PATHS), flush=True)
        per_seed.append({"seed": seed, "rows": rows})
    record = {"rows": summary(per_seed), "per_seed": per_seed, "data": str(args.data), "alpha": args.alpha,
              "protocol": "test cases (next item) with their history cut to n random Like/Love titles",
              "seconds": round(time.perf_counter() - started, 1), "python": platform.python_version(),
              "command": " ".join(["python benchmarks/first_rating.py", *(argv or sys.argv[1:])])}
    write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
