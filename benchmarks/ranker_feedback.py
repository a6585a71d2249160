"""The ranker's ways of learning from feedback on one seed, each on the validation and the test events: which
(disliked_targets, disliked_weight, like_features, learning_rounds) to serve is read off the validation columns.

    python benchmarks/ranker_feedback.py --data ../shared/data/ml-100k --out artifacts/bench/ranker-feedback.json
    python benchmarks/ranker_feedback.py --data DIR --out F --variants '[{"learning_rounds": 2}]'   (any options)

The generators are fitted once (the ablation's configs, ``--seed``) and shared by every variant; each variant's
LightGBM is fitted on the training part as ``python -m nostrade.train --model ranker`` fits it. For each: NDCG@10 of
the next item, of the next liked one, of the next disliked one and Δ (liked − disliked), on the validation events
(grouped by their own feedback) and on the test events (EVAL.md's groups).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

import ablation
from nostrade.atomic import write_json
from nostrade.evaluate import metrics_from_ranks, rank_cases
from nostrade.ranker import FittedGenerators
from nostrade.registry import GENERATOR_MODELS, make_model
from nostrade.sasrec_net import SASRecConfig
from nostrade.sasrec_training import DATA_FIELDS, TrainConfig
from nostrade.sequences import DISLIKE
from nostrade.split import split_of
from nostrade.train import auto_generators

VARIANTS = ({"disliked_weight": 1.0}, {"disliked_weight": 3.0}, {"disliked_weight": 10.0}, {"disliked_weight": 30.0},
            {"like_features": False, "disliked_weight": 1.0}, {"like_features": False, "disliked_weight": 3.0},
            {"disliked_targets": "skip"}, {"learning_rounds": 1}, {"learning_rounds": 2})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="raw data folder (as benchmarks/ablation.py)")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny generators (the ablation's --quick): a smoke run")
    parser.add_argument("--variants", type=json.loads, default=list(VARIANTS),
                        help='TwoStage options of each variant, a JSON list (default: %(default)s)')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dataset, name, _ = ablation.prepare(args.data, Path(tmp) / "processed")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    split = split_of(dataset)
    sasrec = {k: v for k, v in dataclasses.asdict(SASRecConfig(n_items=1)).items() if k not in DATA_FIELDS}
    sasrec.update({**dataclasses.asdict(TrainConfig()), "progress": False})
    sasrec.pop("seed")
    options = {"sasrec": sasrec}
    if args.quick:
        quick_sasrec = {**sasrec, **ablation.QUICK_MODEL, **ablation.QUICK_TRAIN}
        options = {**ablation.QUICK_BASELINE_OPTIONS, "sasrec": quick_sasrec}
    fitted = FittedGenerators(GENERATOR_MODELS, options)
    rows = []
    for variant in args.variants:
        started = time.perf_counter()
        model = make_model("ranker", seed=args.seed, generators=auto_generators(dataset), fit_generator=fitted,
                           **variant).fit(dataset, split.train)
        row = {"variant": variant, "fit_seconds": round(time.perf_counter() - started, 1)}
        for part, disliked in (("valid", split.valid.where(split.valid.target_feedback == DISLIKE)),
                               ("test", split.test_disliked)):
            cases = getattr(split, part)
            groups = {"next_item": cases, "next_liked": cases.where(cases.target_feedback != DISLIKE),
                      "next_disliked": disliked}
            ndcg = {g: metrics_from_ranks(rank_cases(model.score, c, dataset.n_items), (10,))["ndcg@10"]
                    for g, c in groups.items()}
            row[part] = {**ndcg, "delta": ndcg["next_liked"] - ndcg["next_disliked"]}
        rows.append(row)
        print(variant, *(f"{p}: " + " ".join(f"{k} {v:.4f}" for k, v in row[p].items()) for p in ("valid", "test")),
              flush=True)
    write_json(args.out, {"dataset": name, "seed": args.seed, "command": " ".join(["python", *sys.argv]),
                          "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
