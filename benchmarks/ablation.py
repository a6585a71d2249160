"""Every baseline and every SASRec ablation on one data set: one command, one table, the plots beside it.

    python benchmarks/ablation.py --data ../shared/data/ml-100k [--out artifacts/results/movielens-100k.json]
    python benchmarks/ablation.py --data data/sample                 (the shipped real anime sample)
    python benchmarks/ablation.py --data DIR --quick                 (smoke run: 1 seed, tiny training)

--data is a raw folder: the Kaggle anime layout (anime.csv + rating*.csv, plain or .gz) or a MovieLens one
(what make_processed_data.py --source movielens reads). It is prepared with the project's pipeline
(nostrade.prep: anime with its defaults, MovieLens unfiltered); a MovieLens folder holding the peers'
ml-100k.split.tsv.gz gets the peers' exact event order (as benchmarks/ml100k.py), so the figures sit beside
../shared/PEERS.md. Split, metrics and targets are EVAL.md's (nostrade.split, nostrade.evaluate): next item,
next liked item, next disliked item (lower is better) and delta = NDCG@10(liked) - NDCG@10(disliked).

Rows: first what is served, ``served:ease``, ``served:sasrec`` and ``served:ranker`` (nostrade.scoring over that
model, with the catalogue as the training part knows it, at the genre blend α and dislike penalty of the best
validation net NDCG@10, as `python -m nostrade.train` chooses them); then, as ablations, the raw models: the baselines
(nostrade.baselines), SASRec with the library's default config (any model or training flag of
`python -m nostrade.train` overrides it for every SASRec row) and its ablations: without the feedback head
(``sasrec-no-head``), with liked-only targets (``sasrec-liked-targets``: Dislikes in the input, not predicted), with a
pairwise push of a disliked next title below the person's liked ones (``sasrec+dislike-margin``), without the feedback
embedding, without the time embedding, with the plain loss (no feedback weighting), with the sampled softmax (--loss sampled:
1,024 shared negatives half uniform and half by popularity, 128 of them, about the share of the catalogue that 1,024
is of the full Kaggle one, and the default: every negative drawn by popularity), with item2vec-initialised item
embeddings, with side features for every title (``sasrec+features``: use_item_features as "fallback", see
nostrade.sasrec_net; ``-sum``: as "sum", id dropout 0.5, ``-sum-no-id-dropout`` without it), and trained and tested on each
user's history shuffled (seeded; the last two events, the validation and test targets, stay last: the control that
shows whether the order of the history matters). Where the order is not time: with the position embedding, trained on
one fixed order (no fresh permutation each epoch), and the control trained and tested as if the file order were time.
``ease-binary`` is Steck's EASE (every watched title a target; ``ease`` has liked targets). The ``MODEL+genre-α`` rows
evaluate the served scoring function (nostrade.scoring: genre blend at α, cold-start paths and dislike rules, exactly
what predict.py serves) over that plain row's models: sasrec where the order is time, ease (the served default) where
it is not; α 0 is the served model part alone. Every row is a nostrade.registry model fitted on the training part, one
loop. Each over --seeds (3), mean ± std; deterministic models (popularity, itemknn, ease, content) run once, std 0.
The ranker rows use the generators `python -m nostrade.train` serves (nostrade.train.auto_generators);
``ranker+als+itemknn`` (where the order is not time) adds the two it leaves out there. Every row
keeps its per-case ranks, and the file's lifts table gives the paired, user-level bootstrap 95% interval of each
lift the README claims (nostrade.report).

Writes FILE.json ({"rows": [{"model", "ndcg@10", "hr@10", "ndcg@20", "hr@20", "std": {...}, ...}], ...}),
FILE.md (the tables) and FILE_metrics.png, FILE_alpha.png, FILE_by_length.png beside it.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nostrade import prep
from nostrade.atomic import write_json, write_text
from nostrade.baselines import BASELINES
from nostrade.dataset import Dataset, load_dataset
from nostrade.diversity import slate_stats
from nostrade.evaluate import evaluate_all_targets, metrics_from_ranks, rank_cases
from nostrade.peers import check_targets_match, in_peer_order
from nostrade.plots import PLOTS, length_labels, save_figure
from nostrade.ranker import FittedGenerators
from nostrade.registry import MODELS, make_model, takes_seed
from nostrade.report import LIFTS, lift, lifts_markdown, pm, summarise
from nostrade.sasrec_net import SASRecConfig
from nostrade.sasrec_training import DATA_FIELDS, TrainConfig
from nostrade.scoring import DISLIKE_WEIGHT, Scoring
from nostrade.sequences import Sequences
from nostrade.similarity import genre_unit_vectors
from nostrade.split import LeaveOneOut, split_of
from nostrade.train import ORDER_FREE_GENERATORS, add_dataclass_flags, auto_generators, configs_from_args

REPO = Path(__file__).resolve().parents[1]
ALPHAS = (0.0, 0.1, 0.2, 0.3)
MMR_LAMBDA = 0.8
VARIANTS = {  # row -> (model, options on top of the command line's or --set's)
    "ease-binary": ("ease", {"liked_targets": False}),
    "sasrec-no-feedback": ("sasrec", {"use_feedback": False}),
    "sasrec-no-head": ("sasrec", {"feedback_head": False}),
    "sasrec-liked-targets": ("sasrec", {"dislike_weight": 0.0}),
    "sasrec+dislike-margin": ("sasrec", {"dislike_margin": 1.0}),
    "sasrec-no-time": ("sasrec", {"use_time": False}),
    "sasrec-plain-loss": ("sasrec", {"feedback_weighting": False}),
    "sasrec-sampled": ("sasrec", {"loss": "sampled", "uniform_share": 0.5}),
    "sasrec-sampled-128": ("sasrec", {"loss": "sampled", "shared_negatives": 128, "uniform_share": 0.5}),
    "sasrec-sampled-popularity": ("sasrec", {"loss": "sampled", "uniform_share": 0.0}),
    "sasrec+item2vec": ("sasrec", {"init": "item2vec"}),
    "sasrec+features": ("sasrec", {"use_item_features": True}),
    "sasrec+features-sum": ("sasrec", {"use_item_features": True, "features_as": "sum"}),
    "sasrec+features-sum-no-id-dropout": ("sasrec", {"use_item_features": True, "features_as": "sum",
                                                     "id_dropout": 0.0}),
    "sasrec+position": ("sasrec", {"use_position": True}),
    "sasrec-fixed-order": ("sasrec", {"permute": False}),
    "sasrec-shuffled": ("sasrec", {}),
    "sasrec-file-order": ("sasrec", {}),
    "ranker-skip-disliked": ("ranker", {"disliked_targets": "skip"}),
    "ranker-disliked-weight-1": ("ranker", {"disliked_weight": 1.0}),
    "ranker-no-like-features": ("ranker", {"like_features": False}),
    "ranker-one-learning-round": ("ranker", {"learning_rounds": 1}),
    "ranker-no-sasrec": ("ranker", {"without": ("sasrec",)}),
    "ranker-no-cf": ("ranker", {"without": ("als", "itemknn", "ease")}),
    "ranker+als+itemknn": ("ranker", {"generators": ("als", "itemknn", *ORDER_FREE_GENERATORS)}),
    "ranker+mmr": ("ranker", {"mmr_lambda": MMR_LAMBDA}),
}
# What is served (nostrade.scoring over a servable model, at the genre blend α chosen on the validation events):
# the headline rows, first in every table. The raw models' rows and the α sweep below them are ablations.
SERVABLE = ("ease", "sasrec", "ranker")
SERVED = {f"served:{model}": model for model in SERVABLE}
# The served function at a fixed α over a plain row's model (the α sweep): sasrec where the order is time, else ease.
SERVED_ROWS = {f"{model}+genre-{a}": (model, a) for model in ("sasrec", "ease") for a in ALPHAS}
FEEDBACK_ROWS = ("sasrec-no-head", "sasrec-liked-targets", "sasrec+dislike-margin")  # ways to learn from feedback
RANKER_FEEDBACK_ROWS = ("ranker-skip-disliked", "ranker-disliked-weight-1", "ranker-no-like-features",
                        "ranker-one-learning-round")  # the ranker's ways to learn from feedback, each without one
ROWS = (*SERVED, *BASELINES, "ease-binary", "sasrec", "sasrec-no-feedback", *FEEDBACK_ROWS, "sasrec-no-time", "sasrec-plain-loss",
        "sasrec-sampled", "sasrec-sampled-128", "sasrec-sampled-popularity",
        *SERVED_ROWS, "sasrec+item2vec", "sasrec+features", "sasrec+features-sum",
        "sasrec+features-sum-no-id-dropout",
        "sasrec+position", "sasrec-fixed-order",
        "sasrec-shuffled",
        "sasrec-file-order", "ranker", *RANKER_FEEDBACK_ROWS, "ranker-no-sasrec", "ranker-no-cf", "ranker+als+itemknn",
        "ranker+mmr")
ORDER_FREE_ONLY = ("sasrec+position", "sasrec-fixed-order", "sasrec-file-order",  # the defaults where order is time
                   "ranker+als+itemknn",  # the generators the ranker does without where the order is not time
                   *(f"ease+genre-{a}" for a in ALPHAS))
TIME_ONLY = ("sasrec-shuffled", "sasrec-no-time",  # order-free data has no time to shuffle or embed
             *(f"sasrec+genre-{a}" for a in ALPHAS))
METRICS = ("ndcg@10", "hr@10", "ndcg@20", "hr@20", "mrr")
LENGTH_BUCKETS = ((2, 9), (10, 19), (20, 49), (50, 99), (100, None))  # test-history lengths (events)
QUICK_BASELINE_OPTIONS = {"als": {"iterations": 2}, "lightgcn": {"epochs": 2}, "gru4rec": {"epochs": 2},
                          "ncf": {"epochs": 2}}
QUICK_MODEL = {"d_model": 16, "n_layers": 1, "max_len": 20}
QUICK_TRAIN = {"epochs": 2, "warmup": 2, "patience": 2}


def default_rows(order_is_time: bool) -> list[str]:
    """Every row that applies to data whose order is (or is not) time."""
    return [r for r in ROWS if r not in (ORDER_FREE_ONLY if order_is_time else TIME_ONLY)]


# ---- data ---------------------------------------------------------------------------------------------------

def prepare(folder: Path, work: Path) -> tuple[Dataset, str, str]:
    """Raw folder -> (Dataset, short name for the output files, how the event order was set)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder (expected a raw anime or MovieLens data folder)")
    anime = sorted(folder.glob("anime.csv*")), sorted(folder.glob("rating*.csv*"))
    if anime[0] and anime[1]:
        prep.run(prep.PrepConfig(source="anime", items=anime[0][0], ratings=anime[1][0], out=work, artifacts=work))
        dataset = load_dataset(work)
        return dataset, dataset.meta["source"], dataset.meta["ordering"]
    prep.run(prep.PrepConfig(source="movielens", ratings=folder, out=work, artifacts=work, min_item_users=1))
    dataset = load_dataset(work)
    split_file = folder / "ml-100k.split.tsv.gz"
    if not split_file.exists():
        return dataset, movielens_name(folder), dataset.meta["ordering"]
    dataset, changed = in_peer_order(dataset, split_file)
    check_targets_match(dataset, split_of(dataset), split_file)
    return dataset, movielens_name(folder), f"the peers' split file {split_file.name} ({changed} users reordered to it)"


def movielens_name(folder: Path) -> str:
    """'ml-100k' -> 'movielens-100k': result files are named for the data set, not like its raw files."""
    return "movielens-" + folder.name.removeprefix("ml-")


def shuffled(sequences: Sequences, seed: int, keep_last: int = 2) -> Sequences:
    """Each user's events in a random order (seeded), except the last ``keep_last`` (the validation and test
    targets), which stay last: same targets, same seen items, only the order of the history is lost.
    An event keeps its feedback and time bin."""
    pos = sequences.position_of_event()
    fixed = pos >= np.repeat(sequences.lengths - keep_last, sequences.lengths)
    key = np.where(fixed, 1.0 + pos, np.random.default_rng(seed).random(len(sequences.iid)))
    return sequences.events(np.lexsort((key, sequences.row_of_event())), sequences.offsets)


# ---- evaluation ---------------------------------------------------------------------------------------------

def bucket_label(low: int, high: int | None) -> str:
    return f"{low}+" if high is None else f"{low}-{high}"


def measure(scorer, split: LeaveOneOut, dataset: Dataset) -> dict:
    """All EVAL.md targets, next-item NDCG@10 per test-history length bucket, and the test top 10's coverage and
    genre diversity (nostrade.diversity)."""
    n_items = dataset.n_items
    targets = evaluate_all_targets(scorer, split, n_items, keep_ranks=True)
    ranks = np.asarray(targets["next_item"]["ranks"])
    lengths = split.test.history.lengths
    by_length = {}
    for low, high in LENGTH_BUCKETS:
        inside = (lengths >= low) & (lengths <= (high if high is not None else np.inf))
        ndcg = metrics_from_ranks(ranks[inside])["ndcg@10"] if inside.any() else None
        by_length[bucket_label(low, high)] = {"ndcg@10": ndcg, "n_cases": int(inside.sum())}
    return {**targets, "by_length": by_length, **slate_stats(scorer, split.test, n_items, genre_unit_vectors(dataset))}


def run_model(name: str, seed: int, options: dict, dataset: Dataset, split: LeaveOneOut):
    """Fit a nostrade.registry model on the training part and measure it: (fitted model, per-seed result). A ranker
    also gets its candidates' recall of the test targets (the ceiling of what it can rank) and its features' gain."""
    started = time.perf_counter()
    model = make_model(name, seed=seed, **options).fit(dataset, split.train)
    info = {"seed": seed, "fit_seconds": time.perf_counter() - started}
    if name == "sasrec":
        r = model.result
        info.update(seconds_to_best=r.seconds_to_best, best_epoch=r.best_epoch, epochs=r.epochs_run,
                    valid=r.best_metrics)
        if model.model.cfg.use_item_features:
            info["feature_shift"] = model.model.cfg.feature_shift
    if name == "ncf":
        info.update(best_epoch=model.best_epoch, epochs=len(model.history), valid_ndcg=model.best_valid_ndcg)
    if name == "ranker":
        info["candidate_recall"] = model.candidate_recall(split.test)
        info["feature_gain"] = model.feature_gain()
    return model, {**info, **measure(model.score, split, dataset)}


# ---- the whole table ----------------------------------------------------------------------------------------

def row_model(name: str) -> tuple[str, dict]:
    """The nostrade.registry model a row fits (a served row: the plain row's model) and the row's own options."""
    if name in SERVED:
        return SERVED[name], {}
    return VARIANTS.get(name, (SERVED_ROWS.get(name, (name,))[0], {}))


def served_result(name: str, seed: int, model, dataset: Dataset, split: LeaveOneOut, dislike_weight: float) -> dict:
    """A served row's or an α-sweep row's result: nostrade.scoring over ``model`` with the catalogue as the training
    part knows it (no whole-file counts), at the row's α or, for a served row, at the α and dislike penalty of the
    best validation net NDCG@10 (Scoring.choose_settings)."""
    scoring = Scoring.over(model, dataset.training_items(split.train), dataset.n_items, dislike_weight)
    if name in SERVED:
        alpha, sweep = scoring.choose_settings(split.valid)
        extra = {"alpha": alpha, "dislike_weight": scoring.dislike_weight, "valid_net_ndcg@10": sweep}
    else:
        alpha = SERVED_ROWS[name][1]
        extra = {"alpha": alpha}
    return {"seed": seed, "fit_seconds": 0.0, **extra, **measure(scoring.scorer(alpha), split, dataset)}


def run_rows(rows, seeds, dataset: Dataset, split: LeaveOneOut, options: dict,
             dislike_weight: float = DISLIKE_WEIGHT) -> list[dict]:
    """``options``: model name -> its options (SASRec's from the command line, the baselines' from --set);
    ``dislike_weight``: the served rows' dislike penalty. Models are fitted once per seed and training data
    (``fitted``): the served-function rows and the ranker rows' generators reuse the plain rows' models."""
    fitted = FittedGenerators(MODELS, options)  # every model of the registry: a served ranker's row reuses its own
    options = {**options, "ranker": {**options.get("ranker", {}), "fit_generator": fitted}}
    fitted.options = options  # a served ranker fitted here shares the generators too
    results = {}
    for name in sorted(rows, key=lambda r: r in SERVED or r in SERVED_ROWS):  # served rows reuse fitted models
        model_name, row_options = row_model(name)
        per_seed = []
        for seed in (seeds if takes_seed(model_name) else seeds[:1]):
            if name in SERVED or name in SERVED_ROWS:
                model = fitted(model_name, seed, dataset, split.train)
                result = served_result(name, seed, model, dataset, split, dislike_weight)
            else:
                run_data = dataset
                if name == "sasrec-shuffled":
                    run_data = dataclasses.replace(dataset, sequences=shuffled(dataset.sequences, seed))
                elif name == "sasrec-file-order":  # the control: as if the file order were time
                    run_data = dataclasses.replace(dataset, meta={**dataset.meta, "order_is_time": True})
                run_split = split if run_data is dataset else split_of(run_data)
                model, result = run_model(model_name, seed, {**options.get(model_name, {}), **row_options},
                                          run_data, run_split)
                if name == model_name:
                    fitted.add(model_name, seed, split.train, model)
            per_seed.append(result)
            print_result(name, per_seed[-1])
        results[name] = {"model": name, **summarise(per_seed)}
    return [results[name] for name in rows]


def print_result(name: str, result: dict) -> None:
    nxt = result["next_item"]
    print(f"{name:20s} seed {result['seed']}: NDCG@10 {nxt['ndcg@10']:.4f} HR@10 {nxt['hr@10']:.4f} | liked "
          f"{result['next_liked']['ndcg@10']:.4f} disliked {result['next_disliked']['ndcg@10']:.4f} delta "
          f"{result['delta_ndcg@10']:+.4f} | {result['fit_seconds']:.1f} s", flush=True)


# ---- lifts: paired bootstrap intervals (nostrade.report) -------------------------------------------------------

def lift_pairs(rows: dict[str, dict]) -> list[tuple[str, str]]:
    """The (A, B) pairs whose lift the README can claim, among the rows present: the served ranker over the better
    served single model; what the served function adds to each raw model; the feedback embedding; each served row's
    over the baseline with the largest Δ."""
    pairs = []
    singles = [r for r in ("served:ease", "served:sasrec") if r in rows]
    if "served:ranker" in rows and singles:
        pairs.append(("served:ranker", max(singles, key=lambda r: rows[r]["ndcg@10"])))
    pairs += [(f"served:{m}", m) for m in SERVABLE if f"served:{m}" in rows and m in rows]
    if "sasrec" in rows and "sasrec-no-feedback" in rows:
        pairs.append(("sasrec", "sasrec-no-feedback"))
    for model, variants in (("sasrec", FEEDBACK_ROWS), ("ranker", RANKER_FEEDBACK_ROWS)):
        pairs += [(model, v) for v in variants if v in rows and model in rows]  # what each way of feedback is worth
    if "ranker" in rows and "ranker+als+itemknn" in rows:
        pairs.append(("ranker", "ranker+als+itemknn"))  # what leaving ALS and item-kNN out costs
    pairs += [(a, "ease") for a in ("sasrec", "served:sasrec") if a in rows and "ease" in rows]
    pairs += [(a, "served:ease") for a in ("served:sasrec", "served:ranker") if a in rows and "served:ease" in rows]
    baselines = [r for r in (*BASELINES, "ease-binary") if r in rows]
    if baselines:
        best = max(baselines, key=lambda r: rows[r]["delta_ndcg@10"])
        pairs += [(f"served:{m}", best) for m in SERVABLE if f"served:{m}" in rows]
    return list(dict.fromkeys(pairs))  # once each, in order


def lifts(record: dict) -> list[dict]:
    """Every pair of ``lift_pairs``: A - B on next-item NDCG@10, next-liked NDCG@10 and Δ, each with its paired,
    user-level bootstrap 95% interval over the same test cases (per-case NDCG averaged over the seeds)."""
    rows = {r["model"]: r for r in record["rows"]}
    cases, n_users = record["cases"], record["cases"]["n_users"]
    return [{"a": a, "b": b, **{stat: lift(rows[a], rows[b], cases, n_users, stat) for stat in LIFTS}}
            for a, b in lift_pairs(rows)]


# ---- report -------------------------------------------------------------------------------------------------

def fewer_seeds(record: dict) -> str:
    seeds = record["config"]["seeds"]
    fewer = [f"{r['model']} {r['seeds']}" for r in record["rows"]
             if takes_seed(row_model(r["model"])[0]) and r["seeds"] != seeds]
    return f"; over fewer seeds: {', '.join(fewer)}" if fewer else ""


def merge_seeds(previous: dict, redone: dict) -> dict:
    """A row re-run over some seeds: its per-seed results replace those seeds' earlier ones, the rest stay."""
    per_seed = {r["seed"]: r for r in previous["per_seed"]} | {r["seed"]: r for r in redone["per_seed"]}
    return {"model": redone["model"], **summarise([per_seed[s] for s in sorted(per_seed)])}


def markdown(record: dict) -> str:
    d, rows, machine = record["dataset"], record["rows"], record["machine"]
    timestamps = "yes" if d["has_timestamps"] else "no (the time embedding carries no information)"
    quick = " Quick smoke run: the figures mean nothing." if record["config"]["quick"] else ""
    updates = [f"`{u['command']}` (re-ran {', '.join(u['rows'])}" +
               (f"; dropped {', '.join(u['dropped'])}, rows no longer defined" if u.get("dropped") else "") + ")"
               for u in record.get("updates", [])]
    made_by = f"`dvc repro {record['stage']}` (dvc.yaml, params.yaml), which ran " if record.get("stage") else ""
    lines = [f"# Ablation on {d['name']}", "",
             made_by + f"`{record['command']}`" + "".join(f", then {u}" for u in updates), "",
             f"{d['n_users']} users, {d['n_items']} items, {d['n_interactions']} events; source {d['source']}; "
             f"timestamps: {timestamps}; event order: {d['order']}. "
             + ("Leave-one-out by time" if d.get("order_is_time", True) else
                "The order is not time: leave-one-out of seeded random events (EVAL.md), histories in random order")
             + ", full ranking over all items, "
             f"seen items excluded, pessimistic ties (EVAL.md); test split. Mean ± std over seeds "
             f"{record['config']['seeds']} (deterministic models: one run, std 0{fewer_seeds(record)}). "
             f"{machine['device']}, "
             f"{machine['cpus']} CPUs, {record['seconds']:.0f} s in all.{quick}",
             "",
             "| model | NDCG@10 | HR@10 | NDCG@20 | HR@20 | NDCG@10 next liked "
             "| NDCG@10 next disliked (lower is better) "
             "| Δ liked − disliked | coverage@10 | ILD@10 | fit s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["std"]
        slate = " | ".join(f"{r[k]:.3f}" if k in r else "–" for k in ("coverage@10", "ild@10"))
        lines.append(f"| {r['model']} | {pm(r['ndcg@10'], s['ndcg@10'])} | {pm(r['hr@10'], s['hr@10'])} | "
                     f"{pm(r['ndcg@20'], s['ndcg@20'])} | {pm(r['hr@20'], s['hr@20'])} | "
                     f"{pm(r['next_liked']['ndcg@10'], s['next_liked_ndcg@10'])} | "
                     f"{pm(r['next_disliked']['ndcg@10'], s['next_disliked_ndcg@10'])} | "
                     f"{pm(r['delta_ndcg@10'], s['delta_ndcg@10'])} | {slate} | {r['fit_seconds']:.1f} |")
    recalls = [f"{r['model']} {pm(r['candidate_recall'], r['std']['candidate_recall'])}" for r in rows
               if "candidate_recall" in r]
    first = rows[0]
    lines += ["", f"Cases: next item {first['n_cases']}, next liked {first['next_liked']['n_cases']}, next disliked "
                  f"{first['next_disliked']['n_cases']}: every target a held-out event (EVAL.md); next liked = the test "
                  "events that are Like/Love, next disliked = "
                  + ("the test events that are Dislikes" if d.get("order_is_time", True) else
                     "one random Dislike per user with one, held out of training and of every history") + "; "
                  "Δ = NDCG@10 next liked − next disliked. "
                  "The served:MODEL rows are what is served: nostrade.scoring (genre blend at the α and dislike penalty "
                  "of the best validation net NDCG@10 — liked targets found count for, disliked ones against — among α "
                  + ", ".join(map(str, ALPHAS)) + " and penalty 0, 0.05; cold-start paths, dislike rules) over "
                  "that model, with the catalogue as the training part knows it; every other row is an ablation: the "
                  "raw models score without the served function. The "
                  f"MODEL+genre-α rows score that model with the served function (nostrade.scoring: "
                  f"blend at α, cold-start paths, dislike rules; no training of their own, fit s 0); "
                  f"sasrec-shuffled is trained and tested with each user's history shuffled (same targets); "
                  f"sasrec-file-order is the control where the order is not time: trained and tested as if the file "
                  f"order were time (last events held out, position embedding, no permutations). Coverage@10: share "
                  f"of the titles in anybody's test top 10; ILD@10: mean genre distance (1 − cosine) within a top 10. "
                  f"ranker rows: nostrade.ranker (generators' candidates, LightGBM lambdarank; -no-sasrec / -no-cf "
                  f"without SASRec / without ALS, item-kNN and EASE; +mmr: MMR re-rank at λ = {MMR_LAMBDA})"
                  + (f"; their candidates' recall of the test targets: {', '.join(recalls)}" if recalls else "")
                  + ".", "",
              *lift_lines(record),
              "NDCG@10 (next item) by the length of the test history:", "",
              "| model | " + " | ".join(f"{label} events (n={first['by_length'][label]['n_cases']})"
                                        for label in length_labels(first)) + " |",
              "|---" * (len(first["by_length"]) + 1) + "|"]
    for r in rows:
        cells = [("–" if c["ndcg@10"] is None else pm(c["ndcg@10"], c["std"]))
                 for c in map(r["by_length"].get, length_labels(first))]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def lift_lines(record: dict) -> list[str]:
    """The served rows' α per seed, and the lifts table: A − B with its paired bootstrap 95% interval; '(tie)'
    where the interval holds 0."""
    served = [f"{r['model']} " + ", ".join(f"{s['alpha']}/{s['dislike_weight']}" for s in r["per_seed"])
              for r in record["rows"] if r["model"] in SERVED]
    lines = [f"Served α / dislike penalty per seed, chosen on the validation events (best net NDCG@10): "
             f"{'; '.join(served)}.", ""] if served else []
    if record.get("lifts"):
        lines += ["Lifts (A − B, paired user-level bootstrap 95% interval over the same test cases, per-case NDCG@10 "
                  "averaged over the seeds; a lift whose interval holds 0 is a tie):", "",
                  lifts_markdown(record["lifts"]), ""]
    return lines




# ---- command line -------------------------------------------------------------------------------------------

def parse_sets(values: list[str]) -> dict:
    """["lightgcn.epochs=20", ...] -> {"lightgcn": {"epochs": 20}}."""
    out: dict[str, dict] = {}
    for value in values:
        key, sep, literal = value.partition("=")
        name, dot, option = key.partition(".")
        if not (sep and dot) or name not in BASELINES:
            raise ValueError(f"--set {value!r}: expected BASELINE.OPTION=VALUE with BASELINE one of {tuple(BASELINES)}")
        try:
            parsed = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            parsed = literal
        out.setdefault(name, {})[option] = parsed
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="raw data folder (anime or MovieLens layout)")
    parser.add_argument("--out", type=Path, help="results JSON (default artifacts/results/<dataset>.json)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: one seed, 2 epochs, a tiny SASRec (the figures mean nothing)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--update", action="store_true",
                        help="re-run only --models over --seeds and merge them into an existing --out (same data set): "
                             "a re-run seed replaces that seed's result, a new seed joins the row's earlier ones; "
                             "rows no longer defined are dropped")
    parser.add_argument("--models", default="",
                        help=f"comma-separated rows (default: all of {','.join(ROWS)} that apply: {', '.join(TIME_ONLY)} "
                             f"only where the order is time, {', '.join(ORDER_FREE_ONLY)} only where it is not)")
    parser.add_argument("--served-dislike-weight", type=float, default=DISLIKE_WEIGHT,
                        help="the served rows' dislike penalty weight (default: the served one, %(default)s)")
    parser.add_argument("--stage", help="the dvc.yaml stage running this command: the result file's header names it")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="BASELINE.OPTION=VALUE",
                        help="a baseline option, e.g. --set lightgcn.epochs=30 (repeatable)")
    add_dataclass_flags(parser, SASRecConfig, skip=DATA_FIELDS)
    add_dataclass_flags(parser, TrainConfig)
    args = parser.parse_args(argv)
    try:
        rows = [r.strip() for r in args.models.split(",") if r.strip()]
        unknown = [r for r in rows if r not in ROWS]
        if unknown:
            raise ValueError(f"--models: unknown rows {unknown}; known: {', '.join(ROWS)}")
        seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
        baseline_options = {**(QUICK_BASELINE_OPTIONS if args.quick else {})}
        for name, options in parse_sets(args.sets).items():
            baseline_options[name] = {**baseline_options.get(name, {}), **options}
        with tempfile.TemporaryDirectory() as tmp:
            dataset, name, order = prepare(args.data, Path(tmp) / "processed")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    rows = rows or default_rows(dataset.order_is_time)
    model_cfg, train_cfg = configs_from_args(args, dataset)
    if args.quick:
        model_cfg = dataclasses.replace(model_cfg, **QUICK_MODEL)
        train_cfg = dataclasses.replace(train_cfg, **QUICK_TRAIN)
    train_cfg = dataclasses.replace(train_cfg, progress=train_cfg.progress and sys.stderr.isatty())
    torch.set_num_threads(train_cfg.num_threads)
    split = split_of(dataset)
    print(f"{name}: {dataset.sequences.n_users} users, {dataset.n_items} items, {len(dataset.sequences.iid)} events; "
          f"order: {order}; seeds {seeds}", flush=True)

    started = time.perf_counter()
    sasrec_options = {**{k: v for k, v in dataclasses.asdict(model_cfg).items() if k not in DATA_FIELDS},
                      **dataclasses.asdict(train_cfg)}
    sasrec_options.pop("seed")
    ranker_options = {"generators": auto_generators(dataset)}  # what `python -m nostrade.train` serves
    results = run_rows(rows, seeds, dataset, split, {**baseline_options, "sasrec": sasrec_options,
                                                     "ranker": ranker_options}, args.served_dislike_weight)
    out = args.out or REPO / "artifacts" / "results" / f"{name}.json"
    plots = {kind: out.with_name(f"{out.stem}_{kind}.png") for kind in PLOTS}
    command = " ".join(["python benchmarks/ablation.py", *map(shlex.quote, map(str, argv or sys.argv[1:]))])
    record = {
        "rows": results,
        "dataset": {"name": name, "source": dataset.meta["source"], "data": str(args.data),
                    "n_users": dataset.sequences.n_users, "n_items": dataset.n_items,
                    "n_interactions": int(len(dataset.sequences.iid)), "iid_map_sha256": dataset.iid_map_hash,
                    "has_timestamps": bool(dataset.meta.get("has_timestamps")), "order": order,
                    "order_is_time": dataset.order_is_time,
                    "time_bins": dataset.meta["time_bins"], "files": dataset.meta.get("files")},
        "config": {"seeds": seeds, "quick": args.quick,
                   "sasrec_model": dataclasses.asdict(model_cfg.for_order(dataset.order_is_time)),
                   "sasrec_train": dataclasses.asdict(train_cfg.for_order(dataset.order_is_time)),
                   "baseline_options": baseline_options,
                   "served_rows": "nostrade.scoring.Scoring (what predict.py serves) over the plain row's models",
                   "dislike_weight": args.served_dislike_weight,
                   "length_buckets": [bucket_label(*b) for b in LENGTH_BUCKETS]},
        "cases": {"n_users": dataset.sequences.n_users, "next_item": split.test.users.tolist(),
                  "next_liked": split.test_liked.users.tolist(), "next_disliked": split.test_disliked.users.tolist()},
        "command": command,
        "stage": args.stage,
        "plots": {kind: p.name for kind, p in plots.items()},
        "seconds": time.perf_counter() - started,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "device": "cuda" if torch.cuda.is_available() else "cpu", "load_average": os.getloadavg(),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S")},
    }
    if args.update and out.exists():
        previous = json.loads(out.read_text())
        if previous["dataset"]["iid_map_sha256"] != record["dataset"]["iid_map_sha256"]:
            print(f"error: {out} holds results of another data set", file=sys.stderr)
            return 2
        if previous.get("cases") != record["cases"]:
            print(f"error: {out} holds results of another split (or of the protocol before every target was held "
                  "out): re-run every row without --update", file=sys.stderr)
            return 2
        redone = {r["model"]: r for r in results}
        dropped = [r["model"] for r in previous["rows"] if r["model"] not in ROWS]  # rows no longer defined
        kept = [merge_seeds(r, redone.pop(r["model"])) if r["model"] in redone else r for r in previous["rows"]
                if r["model"] in ROWS]
        rows_now = kept + list(redone.values())
        record = {**previous, "rows": rows_now,
                  "config": {**previous["config"],
                             "seeds": sorted({s for r in rows_now for s in r.get("seeds", [])})},
                  "updates": previous.get("updates", []) + [{"command": command, "rows": rows, "dropped": dropped,
                                                             "seconds": record["seconds"],
                                                             "machine": record["machine"]}]}
    record["lifts"] = lifts(record)
    text = markdown(record)
    write_json(out, record)
    md = out.with_suffix(".md")
    write_text(md, text)
    for kind, draw in PLOTS.items():
        save_figure(draw(record["rows"]), plots[kind])
    print("\n" + text + f"\nwrote {out}, {md.name}, " + ", ".join(p.name for p in plots.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
