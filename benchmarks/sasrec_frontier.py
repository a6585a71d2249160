"""How far SASRec's own score can keep Dislikes down: every mix of its two "will like" levers, measured against the
targets that "recommend what people will like" set for it (next liked NDCG@10 >= 0.100, Δ >= 0.065, next item >=
0.088; held-out events only, EVAL.md).

    python benchmarks/sasrec_frontier.py --data ../shared/data/ml-100k --out artifacts/bench/sasrec-frontier-ml100k.json

Per seed the ablation's ``sasrec`` row is fitted once (the default SASRec, feedback head on, one thread: the same
model as that row), then every title is scored as

    next-item logit + w · log P(like | history, title) + v · log(like share of the title)

for every w of LIKE_WEIGHTS (the feedback head's weight: training fits it on the validation events, and the served
SASRec is this score, as validation chose α 0 and no dislike penalty for it on every seed) and v of PRIOR_WEIGHTS (the
title's share of Likes and Loves among its training events, smoothed as the ranker's ``like_share`` feature: a
prior that a title is liked, which the head might under-use). For each (w, v): validation net NDCG@10 (liked targets
found count for it, disliked ones against: what training chooses w by) and the test NDCG@10 of the next item, of the
next liked and of the next disliked title, and Δ. The JSON holds every seed and the mean over seeds, and which mixes
meet every target on that mean; the PNG plots Δ against next liked, one line per w.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ablation
from nostrade.atomic import write_json
from nostrade.evaluate import history_mask, metrics_from_ranks, net_ndcg, target_ranks
from nostrade.plots import save_figure
from nostrade.ranker import title_features
from nostrade.registry import make_model
from nostrade.sequences import DISLIKE
from nostrade.split import EvalCases, split_of

LIKE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
PRIOR_WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0)
TARGETS = {"next_liked": 0.100, "delta": 0.065, "next_item": 0.088}  # each a floor


def score_parts(model, cases: EvalCases) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every case's next-item logits and log P(like) of every title, and its seen titles (never ranked)."""
    logits, log_like = model.model.score_parts(cases.history)
    return logits, log_like, history_mask(cases.history, model.model.cfg.n_items)


def ranks_of(parts: tuple, cases: EvalCases, w: float, prior: torch.Tensor) -> np.ndarray:
    logits, log_like, seen = parts
    return target_ranks(logits + w * log_like + prior, torch.from_numpy(cases.target), seen).numpy()


def measure_seed(seed: int, dataset, split, options: dict) -> dict:
    started = time.perf_counter()
    model = make_model("sasrec", seed=seed, **options).fit(dataset, split.train)
    features, names = title_features(dataset, split.train)
    log_share = torch.from_numpy(np.log(features[:, names.index("like_share")]).astype(np.float32))
    log_share[0] = 0.0  # padding
    groups = {"next_item": split.test, "next_liked": split.test_liked, "next_disliked": split.test_disliked}
    parts = {name: score_parts(model, cases) for name, cases in {**groups, "valid": split.valid}.items()}
    liked_valid = split.valid.target_feedback != DISLIKE
    mixes = []
    for w, v in itertools.product(LIKE_WEIGHTS, PRIOR_WEIGHTS):
        prior = v * log_share
        test = {name: metrics_from_ranks(ranks_of(parts[name], cases, w, prior), (10,))["ndcg@10"]
                for name, cases in groups.items()}
        mixes.append({"like_weight": w, "prior_weight": v,
                      "valid_net_ndcg@10": net_ndcg(ranks_of(parts["valid"], split.valid, w, prior), liked_valid),
                      **test, "delta": test["next_liked"] - test["next_disliked"]})
    return {"seed": seed, "fitted_like_weight": model.model.cfg.like_weight,
            "fit_seconds": round(time.perf_counter() - started, 1), "mixes": mixes}


def mean_over_seeds(seeds: list[dict]) -> list[dict]:
    out = []
    for i, mix in enumerate(seeds[0]["mixes"]):
        mean = {key: float(np.mean([s["mixes"][i][key] for s in seeds]))
                for key in ("valid_net_ndcg@10", "next_item", "next_liked", "next_disliked", "delta")}
        out.append({"like_weight": mix["like_weight"], "prior_weight": mix["prior_weight"], **mean,
                    "meets_targets": all(mean[k] >= floor for k, floor in TARGETS.items())})
    return out


def plot(mean: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    for w in LIKE_WEIGHTS:
        line = [m for m in mean if m["like_weight"] == w]
        ax.plot([m["next_liked"] for m in line], [m["delta"] for m in line], marker="o", label=f"w = {w:g}")
        for m in line:
            ax.annotate(f"{m['next_item']:.3f}", (m["next_liked"], m["delta"]), fontsize=6, alpha=0.7)
    ax.axvline(TARGETS["next_liked"], color="grey", linestyle="--")
    ax.axhline(TARGETS["delta"], color="grey", linestyle="--")
    ax.set_xlabel("NDCG@10 next liked (test)")
    ax.set_ylabel("Δ = next liked − next disliked (test)")
    ax.set_title("SASRec's score with w·log P(like) + v·log like share\n(v = 0 … 8 along each line; labels: next item)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="raw data folder (as benchmarks/ablation.py)")
    parser.add_argument("--out", type=Path, required=True, help="results JSON (and a PNG beside it)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated (default: %(default)s)")
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads (1: as the ablation's rows)")
    parser.add_argument("--quick", action="store_true", help="a tiny SASRec (the ablation's --quick): a smoke run")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r} is not a comma-separated list of integers")
    torch.set_num_threads(args.num_threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dataset, name, order = ablation.prepare(args.data, Path(tmp) / "processed")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    split = split_of(dataset)
    options = {"progress": False, "num_threads": args.num_threads}  # else the defaults, as the ablation's sasrec row
    if args.quick:
        options.update({**ablation.QUICK_MODEL, **ablation.QUICK_TRAIN})
    per_seed = []
    for seed in seeds:
        per_seed.append(measure_seed(seed, dataset, split, options))
        print(f"seed {seed}: fitted like_weight {per_seed[-1]['fitted_like_weight']}, "
              f"{per_seed[-1]['fit_seconds']} s", flush=True)
    mean = mean_over_seeds(per_seed)
    for m in mean:
        print(f"w {m['like_weight']:4g} v {m['prior_weight']:3g}: valid net {m['valid_net_ndcg@10']:.4f} | test next "
              f"{m['next_item']:.4f} liked {m['next_liked']:.4f} disliked {m['next_disliked']:.4f} "
              f"Δ {m['delta']:+.4f}{'  meets every target' if m['meets_targets'] else ''}")
    best = max(mean, key=lambda m: m["valid_net_ndcg@10"])
    record = {"dataset": name, "event_order": order, "seeds": seeds, "targets": TARGETS,
              "command": " ".join(["python", *sys.argv]), "cases": {"next_item": len(split.test),
              "next_liked": len(split.test_liked), "next_disliked": len(split.test_disliked)},
              "mean": mean, "any_meets_targets": any(m["meets_targets"] for m in mean),
              "best_on_validation": best, "per_seed": per_seed}
    write_json(args.out, record)
    plot(mean, args.out.with_suffix(".png"))
    print(f"best on validation: w {best['like_weight']:g}, v {best['prior_weight']:g}; any mix meeting every "
          f"target: {record['any_meets_targets']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
