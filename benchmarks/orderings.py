"""How many canonical orderings does the order-free SASRec need? Served validation NDCG@10 and cost per count.

    python benchmarks/orderings.py --checkpoint checkpoints/sasrec.pt --data data/processed \
        --out artifacts/bench/sasrec-orderings.json [--counts 1 2 4 8]

A set-model SASRec (nostrade.sasrec_net: ``permutations`` > 0) averages its last hidden state over that many orderings of
a history's events, in one batched forward pass of that many rows. For each count this scores the validation
events through the served function (nostrade.train.served_validation) and times it (one thread), so a smaller count
is chosen only where it costs no accuracy.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from nostrade.atomic import write_json
from nostrade.registry import load_checkpoint
from nostrade.dataset import load_dataset
from nostrade.split import split_of
from nostrade.train import served_validation


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a set-model SASRec checkpoint")
    parser.add_argument("--data", type=Path, required=True, help="the processed folder it was trained on")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dataset = load_dataset(args.data)
    model = load_checkpoint(args.checkpoint, expected_iid_map_sha256=dataset.iid_map_hash).model
    if getattr(model, "kind", None) != "sasrec" or not model.cfg.permutations:
        print(f"error: {args.checkpoint}: not a set-model SASRec (permutations > 0)", file=sys.stderr)
        return 2
    split, rows = split_of(dataset), {}
    for count in args.counts:
        model.cfg = dataclasses.replace(model.cfg, permutations=count)
        started = time.perf_counter()
        metrics = served_validation(model, dataset, split)
        rows[count] = {**metrics, "seconds": time.perf_counter() - started}
        print(f"{count} orderings: served validation NDCG@10 {metrics['ndcg@10']:.4f}, HR@10 {metrics['hr@10']:.4f} "
              f"({rows[count]['seconds']:.1f} s for {metrics['n_cases']} users)", flush=True)
    write_json(args.out, {"checkpoint": str(args.checkpoint), "data": str(args.data), "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
