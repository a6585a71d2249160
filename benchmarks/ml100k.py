"""SASRec on MovieLens-100K beside the peer libraries (RecBole 1.2.1, implicit ALS), same split and metrics.

    python benchmarks/ml100k.py [--data ../shared/data/ml-100k] [--out artifacts/bench/ml100k.json] [flags]

Prepares ML-100K with the project's pipeline (nostrade.prep, no filtering), puts every user's events in
the exact order of the peers' split file (ml-100k.split.tsv.gz), checks that leave-one-out then gives the
peers' validation and test items, trains the default SASRec (SASRecConfig / TrainConfig defaults; any
model or training flag of `python -m nostrade.train` overrides them, for ablations) with 3 seeds, early
stopping on validation NDCG@10, and reports next-item test metrics, full ranking, seen items excluded.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from nostrade import prep
from nostrade.atomic import write_json
from nostrade.dataset import load_dataset, sha256_of
from nostrade.evaluate import evaluate, evaluate_all_targets
from nostrade.sasrec_net import SASRecConfig
from nostrade.peers import check_targets_match, in_peer_order
from nostrade.report import summarise
from nostrade.split import split_of
from nostrade.train import add_dataclass_flags, configs_from_args
from nostrade.sasrec_training import DATA_FIELDS, TrainConfig, train_sasrec

REPO = Path(__file__).resolve().parents[1]

# Test-set figures copied from ../shared/PEERS.md (same machine class: 2 CPU cores, no GPU; same split).
PEERS_MD = {
    "ALS BM25 (implicit 0.7.3), 3 seeds": {"hr@10": 0.1276, "ndcg@10": 0.0711, "hr@20": 0.2036, "ndcg@20": 0.0900},
    "ALS alpha=1 (implicit 0.7.3), 3 seeds": {"hr@10": 0.1343, "ndcg@10": 0.0678, "hr@20": 0.2022, "ndcg@20": 0.0848},
    "SASRec (RecBole 1.2.1, CE, max len 50)": {"hr@10": 0.1188, "ndcg@10": 0.0581, "hr@20": 0.1909,
                                               "ndcg@20": 0.0764, "seconds_to_best": 2090},
    "BPR-MF (RecBole 1.2.1)": {"hr@10": 0.1241, "ndcg@10": 0.0673, "hr@20": 0.1951, "ndcg@20": 0.0850},
    "LightGCN (RecBole 1.2.1)": {"hr@10": 0.0923, "ndcg@10": 0.0489, "hr@20": 0.1591, "ndcg@20": 0.0658},
    "Popularity (RecBole, patched)": {"hr@10": 0.0838, "ndcg@10": 0.0435, "hr@20": 0.1273, "ndcg@20": 0.0544},
    "GRU4Rec (RecBole 1.2.1, not converged)": {"hr@10": 0.0467, "ndcg@10": 0.0206, "hr@20": 0.0806,
                                               "ndcg@20": 0.0289},
}
# The targets (PEERS.md): NDCG@10 >= 1.1 x the best peer, HR@10 above RecBole SASRec and ALS,
# time to the best epoch <= a fifth of RecBole SASRec's.
TARGET_NDCG10 = 1.1 * PEERS_MD["ALS BM25 (implicit 0.7.3), 3 seeds"]["ndcg@10"]
TARGET_HR10 = max(PEERS_MD["ALS alpha=1 (implicit 0.7.3), 3 seeds"]["hr@10"],
                  PEERS_MD["SASRec (RecBole 1.2.1, CE, max len 50)"]["hr@10"])
TARGET_SECONDS = PEERS_MD["SASRec (RecBole 1.2.1, CE, max len 50)"]["seconds_to_best"] / 5


def table(ours: dict) -> str:
    rows = [("model", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "s to best")]
    std = ours["std"]
    rows.append(("nostrade SASRec (this run, mean ± std)",
                 *(f"{ours[k]:.4f} ± {std[k]:.4f}" for k in ("hr@10", "ndcg@10", "hr@20", "ndcg@20")),
                 f"{ours['seconds_to_best']:.0f}"))
    for name, m in PEERS_MD.items():
        rows.append((f"{name} [PEERS.md]", *(f"{m[k]:.4f}" for k in ("hr@10", "ndcg@10", "hr@20", "ndcg@20")),
                     str(m.get("seconds_to_best", ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-100k",
                        help="folder with ml-100k.inter.gz, ml-100k.item.gz and ml-100k.split.tsv.gz")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench" / "ml100k.json")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, one seed (the figures mean nothing)")
    add_dataclass_flags(parser, SASRecConfig, skip=DATA_FIELDS)
    add_dataclass_flags(parser, TrainConfig)
    args = parser.parse_args(argv)
    split_file = args.data / "ml-100k.split.tsv.gz"
    if not split_file.exists():
        print(f"error: {split_file}: missing (the peers' split file, see ../shared/PEERS.md)", file=sys.stderr)
        return 2
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        processed = Path(tmp) / "processed"
        prep.run(prep.PrepConfig(source="movielens", ratings=args.data, out=processed, artifacts=processed,
                                 min_item_users=1))
        dataset = load_dataset(processed)
    dataset, reordered_users = in_peer_order(dataset, split_file)
    split = split_of(dataset)
    check_targets_match(dataset, split, split_file)
    print(f"ML-100K: {dataset.sequences.n_users} users, {dataset.n_items} items, {len(dataset.sequences.iid)} events; "
          f"peer split imposed ({reordered_users} users reordered), validation and test targets match it")

    model_cfg, train_cfg = configs_from_args(args, dataset)
    if args.quick:
        train_cfg = dataclasses.replace(train_cfg, epochs=2)
    per_seed = []
    for seed in seeds:
        result = train_sasrec(dataset, model_cfg, dataclasses.replace(train_cfg, seed=seed), split=split)
        scorer = result.model.score
        targets = evaluate_all_targets(scorer, split, dataset.n_items)
        per_seed.append({"seed": seed, "test": evaluate(scorer, split.test, dataset.n_items),
                         "valid": result.best_metrics, "seconds_to_best": result.seconds_to_best,
                         "seconds_total": result.seconds_total, "best_epoch": result.best_epoch,
                         "epochs": result.epochs_run, "next_liked": targets["next_liked"],
                         "next_disliked": targets["next_disliked"], "delta_ndcg@10": targets["delta_ndcg@10"],
                         "history": result.history})
        t = per_seed[-1]["test"]
        print(f"seed {seed}: test NDCG@10 {t['ndcg@10']:.4f} HR@10 {t['hr@10']:.4f}; validation NDCG@10 "
              f"{result.best_metrics['ndcg@10']:.4f}; best epoch {result.best_epoch} of {result.epochs_run}, "
              f"{result.seconds_to_best:.0f} s to best", flush=True)

    ours = summarise(per_seed, target="test")
    checks = {"ndcg@10 >= 1.1 x best peer": ours["ndcg@10"] >= TARGET_NDCG10,
              "hr@10 above RecBole SASRec and ALS": ours["hr@10"] > TARGET_HR10,
              "seconds to best <= RecBole SASRec / 5": ours["seconds_to_best"] <= TARGET_SECONDS}
    print("\nnext-item target, test split, full ranking, seen items excluded\n" + table(ours))
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    record = {
        "nostrade": ours,
        "config": {"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg), "seeds": seeds,
                   "quick": args.quick},
        "dataset": {"source": dataset.meta["source"], "format": dataset.meta.get("format"),
                    "n_users": dataset.sequences.n_users, "n_items": dataset.n_items,
                    "n_interactions": int(len(dataset.sequences.iid)), "iid_map_sha256": dataset.iid_map_hash,
                    "files": dataset.meta["files"], "split_file": str(split_file),
                    "split_sha256": sha256_of(split_file), "users_reordered_to_peer_split": reordered_users},
        "peers": {"source": "../shared/PEERS.md", "test": PEERS_MD},
        "targets": {"ndcg@10": TARGET_NDCG10, "hr@10": TARGET_HR10, "seconds_to_best": TARGET_SECONDS,
                    "met": checks},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "device": "cuda" if torch.cuda.is_available() else "cpu", "load_average": os.getloadavg(),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S")},
    }
    write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
