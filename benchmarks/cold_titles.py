"""Cold titles: how well a model finds the next title when that title's id was never trained.

    python benchmarks/cold_titles.py --data DIR --out FILE.json [--seeds 0,1,2] [any flag of nostrade.train's SASRec]

--data: a processed folder (make_processed_data.py's, e.g. data/processed) or a raw one (read as
benchmarks/ablation.py reads it: ML-100K in the peers' event order). Per seed s:
1. the data set's split (EVAL.md, nostrade.split; the same for every seed);
2. the titles with enough data (at least MIN_TRAIN_USERS users in the training part); a seeded (s) 10% of them
   are cold, and every event of a cold title is removed from the training part, so their ids are never trained;
3. the cases: the test events (next item) whose target is a cold title, with their whole histories (a history may
   hold cold titles: the model reads them as it reads any title it has no id part for); full ranking over every
   title, the history's titles excluded, pessimistic ties: HR@10, NDCG@10 (nostrade.evaluate). The validation
   events whose target is cold are measured the same way (``valid``: where options such as --id-dropout are chosen).
Rows: ``content`` (the content baseline: genre/type cosine to the history's profile, no training data),
``popularity`` (training users per title: a cold title has none, so it ranks with the titles nobody watched),
``sasrec+features`` (SASRec with use_item_features, as the flags set it, by default "fallback" (nostrade.sasrec_net),
trained without the cold titles' events: a cold title is its feature part alone, plus the model's feature_shift, fitted
on the validation events and recorded per seed) and ``sasrec+features+id`` (the warm control: the same model trained
on the whole training part, so the cold titles have their id part too; its ``warm``: next-item HR@10 / NDCG@10 over
every test target). SASRec rows stop early on the split's validation events. A "sum" model is scored with the
config's ``id_weight`` (--id-weight); its ``by_id_weight`` scores the same fitted models with the id part weighted by
each of ID_WEIGHTS (no refitting), and for the warm control also every test event (``warm``), to show what a lower id
weight costs titles with an id.

Writes {"rows": {row: {"hr@10", "ndcg@10", "std": {...}, "valid": {...}}}, "n_cold_targets": total over seeds,
"per_seed": [...], ...}: mean ± std over seeds.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ablation import prepare
from nostrade.atomic import write_json
from nostrade.dataset import Dataset, load_dataset
from nostrade.evaluate import metrics_from_ranks, rank_cases
from nostrade.sasrec_net import SASRecConfig
from nostrade.registry import make_model
from nostrade.report import mean_std
from nostrade.split import EvalCases, split_of
from nostrade.train import add_dataclass_flags, configs_from_args
from nostrade.sasrec_training import DATA_FIELDS, TrainConfig

COLD_SHARE = 0.10
MIN_TRAIN_USERS = 5
ROWS = ("content", "popularity", "sasrec+features", "sasrec+features+id")
METRICS = ("hr@10", "ndcg@10")
ID_WEIGHTS = (1.0, 0.5, 0.25, 0.0)


def cold_titles(train_users: np.ndarray, seed: int) -> np.ndarray:
    """A seeded COLD_SHARE of the titles with at least MIN_TRAIN_USERS training users (iids, sorted)."""
    enough = np.flatnonzero(train_users >= MIN_TRAIN_USERS)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(enough, size=max(1, round(COLD_SHARE * len(enough))), replace=False))


def cases_with_target_in(cases: EvalCases, iids: np.ndarray) -> EvalCases:
    rows = np.flatnonzero(np.isin(cases.target, iids))
    return EvalCases(cases.users[rows], cases.history.take(rows), cases.target[rows], cases.target_feedback[rows])


def measure(scorer, cases: EvalCases, n_items: int) -> dict:
    metrics = metrics_from_ranks(rank_cases(scorer, cases, n_items))
    return {k: metrics[k] for k in METRICS}


def run_seed(dataset: Dataset, seed: int, sasrec_options: dict) -> dict:
    split = split_of(dataset)
    train = split.train
    users_per_title = np.bincount(np.unique(np.stack([train.row_of_event(), train.iid]), axis=1)[1],
                                  minlength=dataset.n_items + 1)
    cold = cold_titles(users_per_title, seed)
    cold_train = train.select(~np.isin(train.iid, cold))
    test, valid = cases_with_target_in(split.test, cold), cases_with_target_in(split.valid, cold)
    fits = {"content": ("content", train, {}), "popularity": ("popularity", cold_train, {}),
            "sasrec+features": ("sasrec", cold_train, {**sasrec_options, "use_item_features": True}),
            "sasrec+features+id": ("sasrec", train, {**sasrec_options, "use_item_features": True})}
    rows = {}
    for row, (name, part, options) in fits.items():
        started = time.perf_counter()
        model = make_model(name, seed=seed, **options).fit(dataset, part)
        rows[row] = {**measure(model.score, test, dataset.n_items), "valid": measure(model.score, valid, dataset.n_items),
                     "fit_seconds": time.perf_counter() - started}
        if name == "sasrec":
            rows[row]["feature_shift"] = model.model.cfg.feature_shift
        if name == "sasrec" and part is train:
            rows[row]["warm"] = measure(model.score, split.test, dataset.n_items)
        if name == "sasrec" and model.model.cfg.features_as == "sum":
            rows[row]["by_id_weight"] = by_id_weight(model.model, test, valid, split.test if part is train else None,
                                                     dataset.n_items)
        print(f"seed {seed} {row:20s} HR@10 {rows[row]['hr@10']:.4f} NDCG@10 {rows[row]['ndcg@10']:.4f} (valid HR@10 "
              f"{rows[row]['valid']['hr@10']:.4f}) over {len(test)} cold targets; {rows[row]['fit_seconds']:.0f} s",
              flush=True)
    return {"seed": seed, "n_cold_titles": len(cold), "n_cold_targets": len(test), "n_cold_valid": len(valid),
            "rows": rows}


def by_id_weight(model, test: EvalCases, valid: EvalCases, every_test: EvalCases | None, n_items: int) -> dict:
    """The fitted SASRec's cold (and, given ``every_test``, warm) metrics with its id part weighted by each of
    ID_WEIGHTS."""
    out = {}
    for weight in ID_WEIGHTS:
        table = model.item_table(id_weight=weight).detach()
        score = lambda history: model.score(history, table=table)
        out[str(weight)] = {**measure(score, test, n_items), "valid": measure(score, valid, n_items)}
        if every_test is not None:
            out[str(weight)]["warm"] = measure(score, every_test, n_items)
    return out


def mean_of(runs: list[dict]) -> dict:
    """Mean of each metric over runs (nested dicts alike), and its std over them."""
    out = {k: mean_std([r[k] for r in runs])[0] for k in METRICS}
    out["std"] = {k: mean_std([r[k] for r in runs])[1] for k in METRICS}
    for nested in ("valid", "warm"):
        if nested in runs[0]:
            out[nested] = mean_of([r[nested] for r in runs])
    return out


def summary(per_seed: list[dict]) -> dict:
    """Each row's metrics as mean, with their std over seeds (and the validation ones likewise)."""
    out = {}
    for row in ROWS:
        runs = [s["rows"][row] for s in per_seed]
        out[row] = {**mean_of(runs), "fit_seconds": float(np.median([r["fit_seconds"] for r in runs]))}
        if "by_id_weight" in runs[0]:
            out[row]["by_id_weight"] = {w: mean_of([r["by_id_weight"][w] for r in runs]) for w in runs[0]["by_id_weight"]}
    return out


def load(folder: Path, work: Path) -> tuple[Dataset, str]:
    """A processed folder as it is, or a raw one prepared as the ablation prepares it."""
    if (folder / "meta.json").exists():
        dataset = load_dataset(folder)
        return dataset, dataset.meta.get("source", folder.name)
    dataset, name, _ = prepare(folder, work)
    return dataset, name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="processed folder, or raw anime / MovieLens folder")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    add_dataclass_flags(parser, SASRecConfig, skip=(*DATA_FIELDS, "use_item_features"))
    add_dataclass_flags(parser, TrainConfig, skip=("seed",))
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        with tempfile.TemporaryDirectory() as tmp:
            dataset, name = load(args.data, Path(tmp) / "processed")
        args.use_item_features, args.seed = True, 0
        model_cfg, train_cfg = configs_from_args(args, dataset)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(train_cfg.num_threads)
    options = {**{k: v for k, v in dataclasses.asdict(model_cfg).items() if k not in (*DATA_FIELDS, "use_item_features")},
               **{k: v for k, v in dataclasses.asdict(train_cfg).items() if k != "seed"}}
    started = time.perf_counter()
    per_seed = [run_seed(dataset, seed, options) for seed in seeds]
    rows = summary(per_seed)
    ratio = rows["sasrec+features"]["hr@10"] / max(rows["content"]["hr@10"], 1e-12)
    record = {
        "rows": rows, "n_cold_targets": sum(s["n_cold_targets"] for s in per_seed),
        "hr@10_features_over_content": ratio, "per_seed": per_seed,
        "protocol": {"cold_share": COLD_SHARE, "min_train_users": MIN_TRAIN_USERS, "cases": "test next-item events "
                     "whose target is cold; full ranking, history excluded, pessimistic ties"},
        "dataset": {"name": name, "data": str(args.data), "n_users": dataset.sequences.n_users,
                    "n_items": dataset.n_items, "iid_map_sha256": dataset.iid_map_hash},
        "config": {"seeds": seeds, "sasrec": options},
        "command": " ".join(["python benchmarks/cold_titles.py", *map(shlex.quote, argv or sys.argv[1:])]),
        "seconds": time.perf_counter() - started,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "load_average": os.getloadavg(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")},
    }
    write_json(args.out, record)
    for row, r in rows.items():
        print(f"{row:20s} HR@10 {r['hr@10']:.4f} ± {r['std']['hr@10']:.4f}  NDCG@10 {r['ndcg@10']:.4f} ± "
              f"{r['std']['ndcg@10']:.4f}")
    print(f"{record['n_cold_targets']} cold targets over seeds {seeds}; sasrec+features / content HR@10 = {ratio:.2f}; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
