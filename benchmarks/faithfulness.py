"""Are the explanations faithful? Remove the pick an explanation names as most influential, or a random one.

    python benchmarks/faithfulness.py --out artifacts/bench/faithfulness.json
        [--datasets anime ml100k] [--ml100k ../shared/data/ml-100k]
        [--anime-checkpoint PATH --anime-data DIR] [--ml100k-checkpoint PATH --ml100k-data DIR]
        [--epochs 30] [--cases 300] [--top 5] [--quick]

For each data set (the embedded anime sample; MovieLens-100K read from ../shared/data/ml-100k, never
copied), a SASRec is trained on the leave-one-out training split (or loaded with --*-checkpoint and
--*-data). For each of --cases test users, the history before their test item (its most recent
max_len events, with their feedback and timestamps) gets --top recommendations with explanations.
For every recommendation whose explanation names a pick and whose history has at least two other
Like/Love picks the model knows:

- drop(named) = score(history) - score(history without the named pick), for that recommendation;
- drop(random) = the same for a Like/Love pick drawn at random among the others;
- the explanation is faithful on that pair when drop(named) > drop(random) (a tie is not).

The rate is reported on the final blended score (what the person sees) and on the raw SASRec logit.
Two controls: a second random pick in place of the named one (the rate of a guess: ~0.5 less ties),
and the same measurement with an untrained (random-weight) model of the same shape.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

import predict
from nostrade import prep
from nostrade.atomic import write_json
from nostrade.dataset import Dataset, load_dataset
from nostrade.distributed import default_threads
from nostrade.history import as_events, training_events
from nostrade.sasrec_net import SASRec, SASRecConfig
from nostrade.sequences import DISLIKE
from nostrade.split import split_of
from nostrade.sasrec_training import TrainConfig, train_sasrec

REPO = Path(__file__).resolve().parents[1]

DEFAULT_ML100K = REPO.parent / "shared" / "data" / "ml-100k"


def prepared(name: str, args, workdir: Path) -> Path:
    given = getattr(args, f"{name}_data")
    if given is not None:
        return Path(given)
    out = workdir / name
    cfg = (prep.PrepConfig(source="anime", out=out, artifacts=out) if name == "anime" else
           prep.PrepConfig(source="movielens", ratings=Path(args.ml100k), out=out, artifacts=out))
    prep.run(cfg)
    return out


def trained(name: str, data: Path, dataset: Dataset, args) -> tuple[predict.Recommender, dict]:
    checkpoint = getattr(args, f"{name}_checkpoint")
    if checkpoint is not None:
        rec = predict.Recommender.load(checkpoint, data)
        return rec, {"checkpoint": str(checkpoint), "config": rec.describe()["model"]}
    model_cfg = SASRecConfig(n_items=dataset.n_items, n_time_bins=dataset.n_time_bins, max_len=args.max_len)
    train_cfg = TrainConfig(epochs=args.epochs, patience=args.patience, seed=args.seed, num_threads=args.threads)
    result = train_sasrec(dataset, model_cfg, train_cfg)
    rec = predict.Recommender(result.model, dataset, catalogue_of(dataset))
    return rec, {"config": vars(model_cfg), "epochs": args.epochs, "best_epoch": result.best_epoch,
                 "valid": result.best_metrics, "seconds": result.seconds_total}


def catalogue_of(dataset: Dataset) -> pd.DataFrame | None:
    path = predict.default_catalogue_path(dataset.meta)
    return None if path is None else predict.load_catalogue(path)


def test_histories(dataset: Dataset, max_len: int | None, n: int, seed: int) -> list[list[predict.Event]]:
    """Up to n random users' test histories (EVAL.md's split), the most recent max_len (a sequence model's window;
    None: all), as events; users with at least 3 liked or loved events in it."""
    test = split_of(dataset).test
    history = test.history if max_len is None else test.history.last(max_len)
    positives = np.bincount(history.row_of_event(), weights=history.feedback != DISLIKE, minlength=history.n_users)
    eligible = np.flatnonzero(positives >= 3)
    chosen = np.sort(np.random.default_rng(seed).choice(eligible, size=min(n, len(eligible)), replace=False))
    frame = training_events(dataset, history.take(chosen), dataset.user_ids[test.users[chosen]])
    return [[predict.Event(*e) for e in as_events(user)] for _, user in frame.groupby("user_id", sort=False)]


def measure(rec: predict.Recommender, histories, top: int, alpha: float, seed: int, desc: str) -> dict:
    rng = np.random.default_rng(seed)
    pairs = []
    for events in tqdm(histories, desc=desc, unit="user"):
        out = rec.recommend(events, k=top, alpha=alpha)
        if out.path != predict.PATH_SEQUENCE:
            continue
        named = out.explanations.drop_duplicates("item_id")  # first row of each recommendation: its top pick
        source = dict(zip(out.items["item_id"], out.items["source"]))
        ids = np.array([e.item_id for e in events])
        rows = rec.rows_of(ids)
        known = (rows >= 0) & (rec.iid_of_row[np.maximum(rows, 0)] > 0)
        liked = ids[known & np.array([e.feedback != DISLIKE for e in events])].tolist()
        variants, meta = [events], []
        for target, pick in zip(named["item_id"], named["pick_item_id"]):
            others = [a for a in liked if a != pick]
            if len(others) < 2:
                continue
            guess, control = rng.choice(others, size=2, replace=False)
            for removed in (pick, guess, control):
                variants.append([e for e in events if e.item_id != removed])
            meta.append((target, source[target]))
        if not meta:
            continue
        s = rec.scores(variants, alpha)
        rows = rec.rows_of(np.array([t for t, _ in meta]))
        for j, ((target, src), row) in enumerate(zip(meta, rows)):
            for kind, scores in (("final", s.final), ("logit", s.raw_model)):
                full = float(scores[0, row])
                named_drop, random_drop, control_drop = (full - float(scores[1 + 3 * j + v, row]) for v in range(3))
                pairs.append({"kind": kind, "source": src, "named": named_drop, "random": random_drop,
                              "control": control_drop})
    frame = pd.DataFrame(pairs)
    report = {"users": len(histories), "pairs": int((frame["kind"] == "final").sum()) if len(frame) else 0}
    for kind in ("final", "logit"):
        part = frame[frame["kind"] == kind] if len(frame) else frame
        if not len(part):
            continue
        report[kind] = {
            "faithful_rate": float((part["named"] > part["random"]).mean()),
            "tie_rate": float((part["named"] == part["random"]).mean()),
            "control_rate": float((part["control"] > part["random"]).mean()),
            "median_drop_named": float(part["named"].median()),
            "median_drop_random": float(part["random"].median()),
            "by_source": {src: {"pairs": len(g), "faithful_rate": float((g["named"] > g["random"]).mean())}
                          for src, g in part.groupby("source")},
        }
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench" / "faithfulness.json")
    parser.add_argument("--datasets", nargs="+", default=["anime", "ml100k"], choices=["anime", "ml100k"])
    parser.add_argument("--ml100k", type=Path, default=DEFAULT_ML100K, help="MovieLens-100K folder (read in place)")
    for name in ("anime", "ml100k"):
        parser.add_argument(f"--{name}-checkpoint", type=Path, help="use this model instead of training one")
        parser.add_argument(f"--{name}-data", type=Path, help="its processed folder (default: prepared afresh)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--cases", type=int, default=300, help="test users per data set")
    parser.add_argument("--top", type=int, default=5, help="recommendations per user")
    parser.add_argument("--alpha", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="default: NOSTRADE_THREADS, else every core")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 epoch, 20 users, anime only")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.cases, args.datasets = 1, 20, ["anime"]
    for name in args.datasets:
        if (getattr(args, f"{name}_checkpoint") is None) != (getattr(args, f"{name}_data") is None):
            parser.error(f"--{name}-checkpoint and --{name}-data go together")
    if "ml100k" in args.datasets and args.ml100k_data is None and not Path(args.ml100k).is_dir():
        print(f"error: {args.ml100k}: no MovieLens-100K folder (pass --ml100k PATH)", file=sys.stderr)
        return 2

    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory(prefix="faithfulness-") as workdir:
        for name in args.datasets:
            started = time.perf_counter()
            data = prepared(name, args, Path(workdir))
            dataset = load_dataset(data)
            rec, model_info = trained(name, data, dataset, args)
            histories = test_histories(dataset, rec.max_len, args.cases, args.seed)
            report = measure(rec, histories, args.top, args.alpha, args.seed, f"{name} trained")
            torch.manual_seed(args.seed)
            untrained = predict.Recommender(SASRec(rec.model.cfg).eval(), dataset, rec.catalogue)
            report["untrained_model"] = measure(untrained, histories, args.top, args.alpha, args.seed,
                                                f"{name} untrained")
            report["model"] = model_info
            report["dataset"] = {"source": dataset.meta["source"], "n_users": dataset.meta["n_users"],
                                 "n_items": dataset.n_items, "iid_map_sha256": dataset.iid_map_hash}
            report["seconds"] = time.perf_counter() - started
            results[name] = report

    print(f"\n{'data set':10s} {'pairs':>6s} {'faithful (final)':>17s} {'(logit)':>8s} {'ties':>6s} "
          f"{'guess control':>14s} {'untrained model':>16s}")
    for name, r in results.items():
        if "final" not in r:
            print(f"{name:10s} no pairs")
            continue
        untrained_rate = r["untrained_model"].get("final", {}).get("faithful_rate", float("nan"))
        print(f"{name:10s} {r['pairs']:6d} {r['final']['faithful_rate']:17.3f} {r['logit']['faithful_rate']:8.3f} "
              f"{r['final']['tie_rate']:6.3f} {r['final']['control_rate']:14.3f} {untrained_rate:16.3f}")
    payload = {**results, "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    write_json(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
