"""A trained checkpoint as served, on the test events: the pipeline's evaluate stage (dvc.yaml).

    python benchmarks/evaluate_checkpoint.py --checkpoint checkpoints/model.pt --data data/processed \
        --out artifacts/pipeline/evaluate.json

`python -m nostrade.train` reports the raw model's test figures; this scores the data set's test cases (EVAL.md's
split, nostrade.split) through the served function instead: nostrade.scoring over the checkpoint's model, with the
catalogue as the training part knows it (as the ablation's served rows), at the genre blend α and dislike penalty the
checkpoint records (what predict, the app and the API serve by default). Writes HR and NDCG@10/20 and MRR for the
next item, the next liked and the next disliked item, and Δ = NDCG@10 liked − disliked. Exit 2 on a missing or
unusable file, a checkpoint of other data, or one that records no served settings.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from nostrade.atomic import write_json
from nostrade.dataset import load_dataset
from nostrade.evaluate import evaluate_all_targets
from nostrade.registry import load_checkpoint
from nostrade.scoring import Scoring
from nostrade.split import split_of


def served_test(checkpoint_path: Path, data: Path) -> dict:
    """The checkpoint's served test figures and what produced them (ValueError, FileNotFoundError on bad input)."""
    dataset = load_dataset(data)
    checkpoint = load_checkpoint(checkpoint_path, expected_iid_map_sha256=dataset.iid_map_hash,
                                 expected_n_items=dataset.n_items)
    settings = checkpoint.metrics.get("served")
    if not settings:
        raise ValueError(f"{checkpoint_path}: records no served settings (alpha, dislike_weight); retrain it with "
                         "python -m nostrade.train")
    split = split_of(dataset)
    scoring = Scoring.over(checkpoint.model, dataset.training_items(split.train), dataset.n_items,
                           settings["dislike_weight"])
    test = evaluate_all_targets(scoring.scorer(settings["alpha"]), split, dataset.n_items)
    return {"checkpoint": str(checkpoint_path), "content_sha256": checkpoint.content_sha256, "data": str(data),
            "model": checkpoint.model.kind, "served": settings, "test": test}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/model.pt"))
    parser.add_argument("--data", type=Path, default=Path("data/processed"), help="the processed folder it was trained on")
    parser.add_argument("--out", type=Path, required=True, help="metrics JSON (written atomically)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        record = served_test(args.checkpoint, args.data)
    except (FileNotFoundError, ValueError) as e:  # CheckpointError and CheckpointMismatch are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_json(args.out, record)
    nxt = record["test"]["next_item"]
    print(f"{record['model']} as served (alpha {record['served']['alpha']}, dislike penalty "
          f"{record['served']['dislike_weight']}): test NDCG@10 {nxt['ndcg@10']:.4f} HR@10 {nxt['hr@10']:.4f}, "
          f"delta {record['test']['delta_ndcg@10']:+.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
