"""Train the served model on a processed folder: the best by validation of EASE, the two-stage ranker and SASRec.

    python -m nostrade.train --data data/processed --out checkpoints/model.pt [--model auto --candidates ...]
    python -m nostrade.train --model ranker [--generators ease,content,popularity --n-candidates 100]
    torchrun --nproc_per_node 2 -m nostrade.train ...      (data parallel: gloo on CPU, NCCL on GPUs)

``--model auto`` (the default) fits every kind of ``--candidates`` (``auto_candidates``) on the split's training
part, scores each on the validation events through the served function (nostrade.scoring at predict's default α:
what predict, the app and the API serve), keeps the best by NDCG@10 there, and records every candidate's
validation figures and the choice in the checkpoint's metrics and the metrics JSON (``"auto"``). Its ranker has
every generator where the order is time, and EASE, content and popularity where it is not (``auto_generators``).

EASE is fitted in closed form (seconds; ``--l2``). ``--model ranker`` fits the two-stage ranker
(nostrade.ranker.TwoStage: ``--generators``, each retrieving its ``--n-candidates`` best titles, then LightGBM
lambdarank); its SASRec generator trains with the SASRec and training flags given here (--epochs, --d-model, ...),
and every generator with --seed.

SASRec trains with the loop of nostrade.sasrec_training (its flags: one per SASRecConfig and TrainConfig field);
with ``--model sasrec`` the best model goes to --out, the full training state after every evaluation to
<out>.last.pt, so --resume continues a killed run exactly where its last evaluation left it.

Exit status: 0 done; 1 an unexpected error (Python's traceback); 2 bad input (the processed folder, flags, a
--resume checkpoint of another vocabulary or config); 5 an unusable --resume checkpoint (damaged, not a
checkpoint); 7 cannot write --out / --metrics (read-only folder, full disk). A failure prints one line
'error: ...' naming the file; --out is replaced atomically, so it holds the previous checkpoint or the new one.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import asdict

from nostrade import distributed
from nostrade.atomic import WriteError, write_json
from nostrade.baselines.ease import EASE
from nostrade.checkpoint import CheckpointError, ServedModel, readable_config, save_checkpoint
from nostrade.dataset import Dataset, load_dataset
from nostrade.evaluate import evaluate, evaluate_all_targets
from nostrade.ranker import GENERATORS, N_CANDIDATES, FittedGenerators, TwoStage
from nostrade.registry import GENERATOR_MODELS, SERVED_KINDS, make_model
from nostrade.sasrec_net import SASRecConfig
from nostrade.sasrec_training import (CROPS, DATA_FIELDS, LOSSES, EpochCallback, TrainConfig, TrainResult,
                                      train_sasrec)
from nostrade.scoring import Scoring
from nostrade.split import LeaveOneOut, split_of

AUTO_KINDS = ("ease", "ranker", "sasrec")  # what --model auto compares (SERVED_KINDS, in tie order)
# The ranker's generators where the order is not time. On the anime sample the sequence generators added nothing
# and cost most of the fit; ALS and item-kNN tie on validation (artifacts/bench/ranker-train-*.json) and cost a
# quarter of a request (the ablation row ranker+als+itemknn holds them with intervals).
ORDER_FREE_GENERATORS = ("ease", "content", "popularity")

DELTA_MEANING = ("delta = NDCG@10 of the held-out titles people liked minus NDCG@10 of the {n} held-out titles they "
                 "disliked (EVAL.md): above 0 the model ranks what people liked above what they disliked (the larger, "
                 "the better it tells them apart); below 0 it ranks the disliked ones higher.")


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    """One --flag per dataclass field, with the field's default and type."""
    group = parser.add_argument_group(cls.__name__)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        if isinstance(default, bool) or (default is None and field.type.startswith("bool")):
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=default,
                               help="default: from the data's order" if default is None else None)
        elif default is None:  # "int | None": None = from the data's order
            group.add_argument(flag, dest=field.name, type=int, default=None, help="default: from the data's order")
        else:
            choices = {"loss": LOSSES, "crop": CROPS}.get(field.name)
            group.add_argument(flag, dest=field.name, type=type(default), default=default, choices=choices,
                               help=f"default {default}")


def configs_from_args(args: argparse.Namespace, dataset: Dataset) -> tuple[SASRecConfig, TrainConfig]:
    values = vars(args)
    model_fields = {f.name: values[f.name] for f in dataclasses.fields(SASRecConfig) if f.name not in DATA_FIELDS}
    model_cfg = SASRecConfig(n_items=dataset.n_items, n_time_bins=dataset.n_time_bins, **model_fields)
    train_cfg = TrainConfig(**{f.name: values[f.name] for f in dataclasses.fields(TrainConfig)})
    return model_cfg, train_cfg


def fit_ease(dataset: Dataset, split: LeaveOneOut, l2: float) -> TrainResult:
    """EASE fitted on the split's training part, with its validation metrics."""
    started = time.perf_counter()
    model = EASE(l2).fit(dataset, split.train)
    seconds = time.perf_counter() - started
    return TrainResult(model, [], evaluate(model.score, split.valid, dataset.n_items), seconds, 0,
                       seconds_total=seconds)


def fit_ranker(dataset: Dataset, split: LeaveOneOut, generators: tuple[str, ...], n_candidates: int,
               model_cfg: SASRecConfig, train_cfg: TrainConfig) -> TrainResult:
    """The two-stage ranker fitted on the split's training part (its SASRec generator with these configs), with
    its validation metrics."""
    started = time.perf_counter()
    sasrec = {**{k: v for k, v in asdict(model_cfg).items() if k not in DATA_FIELDS}, **asdict(train_cfg)}
    del sasrec["seed"]  # every generator's, given to each by the ranker
    model = make_model("ranker", train_cfg.seed, generators=generators, n_candidates=n_candidates,
                       fit_generator=FittedGenerators(GENERATOR_MODELS, {"sasrec": sasrec})).fit(dataset, split.train)
    seconds = time.perf_counter() - started
    return TrainResult(model, [], evaluate(model.score, split.valid, dataset.n_items), seconds, 0,
                       seconds_total=seconds, train_cfg=train_cfg)


def refit_ranker(ranker: TwoStage, dataset: Dataset, split: LeaveOneOut, train_cfg: dict) -> TrainResult:
    """A ranker of ``ranker``'s options (its SASRec generator of its config and ``train_cfg``, the TrainConfig it
    was trained with) fitted anew on the split's training part, with its validation metrics (nostrade.finetune)."""
    started = time.perf_counter()
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in train_cfg.items() if k in known})
    options, sasrec = {}, ranker.generators.get("sasrec")
    if sasrec is not None:
        options["sasrec"] = {**{k: v for k, v in sasrec.config().items() if k not in DATA_FIELDS}, **asdict(cfg)}
        del options["sasrec"]["seed"]  # every generator's, given to each by the ranker
    model = TwoStage(**ranker.options(), fit_generator=FittedGenerators(ranker.generator_models, options))
    model.fit(dataset, split.train)
    seconds = time.perf_counter() - started
    return TrainResult(model, [], evaluate(model.score, split.valid, dataset.n_items), seconds, 0,
                       seconds_total=seconds, train_cfg=cfg)


def auto_generators(dataset: Dataset) -> tuple[str, ...]:
    """The ranker's generators under ``--model auto``: all of them where the order is time, else
    ORDER_FREE_GENERATORS."""
    return GENERATORS if dataset.order_is_time else ORDER_FREE_GENERATORS


def served_validation(model: ServedModel, dataset: Dataset, split: LeaveOneOut) -> dict:
    """Validation metrics of the model as served (nostrade.scoring, the catalogue as the training part knows it),
    at the genre blend α and dislike penalty chosen on those events (Scoring.choose_settings: the best net NDCG@10):
    the settings predict serves by default (``"alpha"``, ``"dislike_weight"``) and the figures ``--model auto``
    compares."""
    scoring = Scoring.over(model, dataset.training_items(split.train), dataset.n_items)
    alpha, sweep = scoring.choose_settings(split.valid)
    return {**evaluate(scoring.scorer(alpha), split.valid, dataset.n_items), "alpha": alpha,
            "dislike_weight": scoring.dislike_weight, "net_ndcg@10_by_setting": sweep}


def choose_by_validation(fit: Callable[[str], TrainResult], kinds: tuple[str, ...], dataset: Dataset,
                         split: LeaveOneOut) -> tuple[TrainResult, dict]:
    """Fit every kind (``fit(kind)``), keep the best by served validation NDCG@10 (ties: the earlier kind), and
    the table of every candidate: {"chosen", "metric", "candidates": {kind: valid metrics and fit seconds}}."""
    results, table = {}, {}
    for kind in kinds:
        results[kind] = fit(kind)
        table[kind] = {**served_validation(results[kind].model, dataset, split),
                       "fit_seconds": results[kind].seconds_total}
        print(f"auto: {kind} served validation NDCG@10 {table[kind]['ndcg@10']:.4f} "
              f"(fitted in {results[kind].seconds_total:.0f} s)", flush=True)
    chosen = max(kinds, key=lambda kind: (table[kind]["ndcg@10"], -kinds.index(kind)))
    return results[chosen], {"chosen": chosen, "metric": "ndcg@10 of the validation events, as served",
                             "candidates": table}


def run_record(dataset: Dataset, data_dir, result: TrainResult, test: dict, ctx, auto: dict | None) -> dict:
    """The metrics JSON EVAL.md asks of every run (``auto``: --model auto's table, else None)."""
    train_cfg = asdict(result.train_cfg) if result.train_cfg is not None else {}
    return {
        "model": result.model.kind, "data": str(data_dir), "source": dataset.meta.get("source"),
        "synthetic": dataset.meta.get("synthetic"), "iid_map_sha256": dataset.iid_map_hash,
        "n_users": dataset.sequences.n_users, "n_items": dataset.n_items,
        "model_config": readable_config(result.model), "train_config": train_cfg, "seed": train_cfg.get("seed"),
        "device": str(ctx.device), "world_size": ctx.world_size,
        "wall_seconds": result.seconds_total, "seconds_to_best": result.seconds_to_best,
        "best_epoch": result.best_epoch, "epochs": result.epochs_run,
        "valid": result.best_metrics, "test": test, "history": result.history, "auto": auto,
    }


def fit_kind(kind: str, dataset: Dataset, split: LeaveOneOut, args: argparse.Namespace, model_cfg: SASRecConfig,
             train_cfg: TrainConfig, on_epoch: EpochCallback | None) -> tuple[TrainResult, str]:
    """One model fitted on the split's training part, and a line saying how it went."""
    if kind == "ease":
        result = fit_ease(dataset, split, args.l2)
        return result, f"ease (l2 {args.l2:g}) fitted in {result.seconds_total:.0f} s"
    if kind == "ranker":
        generators = args.generators or auto_generators(dataset)
        result = fit_ranker(dataset, split, generators, args.n_candidates, model_cfg, train_cfg)
        return result, (f"ranker ({', '.join(result.model.generator_names)}; {args.n_candidates} candidates each) "
                        f"fitted in {result.seconds_total:.0f} s")
    # under auto, a candidate that may lose writes no checkpoint of its own (nor a resumable state)
    result = train_sasrec(dataset, model_cfg, train_cfg, split=split, on_epoch=on_epoch,
                          checkpoint_path=args.out if args.model == "sasrec" else None)
    return result, f"best epoch {result.best_epoch} of {result.epochs_run}, {result.seconds_to_best:.0f} s to best"


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/processed", help="processed folder (make_processed_data.py)")
    parser.add_argument("--out", default="checkpoints/model.pt", help="best checkpoint; <out>.last.pt for resuming")
    parser.add_argument("--metrics", default="artifacts/metrics.json", help="metrics JSON of the run")
    parser.add_argument("--model", choices=("auto", *SERVED_KINDS), default="auto",
                        help="auto (default): the best of --candidates by served validation NDCG@10; or one kind")
    parser.add_argument("--candidates", default=None,
                        help=f"--model auto: the kinds it fits and compares, some of {','.join(AUTO_KINDS)} (default: "
                             "all where the order is time, else without sasrec)")
    parser.add_argument("--l2", type=float, default=EASE().l2, help="EASE's ridge weight (default %(default)s)")
    parser.add_argument("--generators", default=None,
                        help="the ranker's candidate generators, comma-separated (default: all of "
                             f"{','.join(GENERATORS)} where the order is time, else {','.join(ORDER_FREE_GENERATORS)})")
    parser.add_argument("--n-candidates", type=int, default=N_CANDIDATES,
                        help="the ranker: titles each generator retrieves (default %(default)s)")
    add_dataclass_flags(parser, SASRecConfig, skip=DATA_FIELDS)
    add_dataclass_flags(parser, TrainConfig)
    args = parser.parse_args(argv)
    split_names = lambda text: tuple(name.strip() for name in text.split(",") if name.strip())
    args.generators = split_names(args.generators) if args.generators else None
    args.candidates = split_names(args.candidates) if args.candidates else None
    return args


def auto_candidates(dataset: Dataset) -> tuple[str, ...]:
    """What ``--model auto`` compares by default: every kind where the order is time; EASE and the ranker where it
    is not (the order-free SASRec trains for minutes on the sample, the demo's budget, and scored about half of
    EASE's test NDCG@10 there: artifacts/results/anime.md; ``--candidates`` adds it)."""
    return AUTO_KINDS if dataset.order_is_time else tuple(k for k in AUTO_KINDS if k != "sasrec")


def check_options(args: argparse.Namespace, dataset: Dataset) -> tuple[str, ...]:
    """The kinds to fit; bad options fail here (ValueError), before any fitting."""
    kinds = (args.candidates or auto_candidates(dataset)) if args.model == "auto" else (args.model,)
    if not kinds or set(kinds) - set(AUTO_KINDS):
        raise ValueError(f"--candidates: {','.join(kinds)} must be some of {','.join(AUTO_KINDS)}")
    if "ranker" in kinds:
        make_model("ranker", generators=args.generators or GENERATORS, n_candidates=args.n_candidates)
    return kinds


def main(argv=None, on_epoch: EpochCallback | None = None) -> int:
    """The command line. ``on_epoch``: as train_sasrec's, for a caller that runs it in-process (code/app.py)."""
    args = parse_args(argv)
    try:
        dataset = load_dataset(args.data)
        model_cfg, train_cfg = configs_from_args(args, dataset)
        kinds = check_options(args, dataset)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ctx = distributed.setup(train_cfg.device)
    try:
        split = split_of(dataset)
        done = {}  # kind -> the line saying how its fit went

        def fit(kind: str) -> TrainResult:
            result, done[kind] = fit_kind(kind, dataset, split, args, model_cfg, train_cfg, on_epoch)
            return result

        if args.model == "auto":
            result, auto = choose_by_validation(fit, kinds, dataset, split)
            served = auto["candidates"][result.model.kind]
        else:
            result, auto = fit(args.model), None
            served = served_validation(result.model, dataset, split) if ctx.is_main else {}
        if ctx.is_main:
            test = evaluate_all_targets(result.model.score, split, dataset.n_items)
            settings = {"alpha": served["alpha"], "dislike_weight": served["dislike_weight"]}
            save_checkpoint(args.out, result.model, result.train_cfg or {}, dataset.meta,
                            {"valid": result.best_metrics, "best_epoch": result.best_epoch, "test": test,
                             "auto": auto, "served": settings})
            write_json(args.metrics, run_record(dataset, args.data, result, test, ctx, auto))
            nxt, liked = test["next_item"], test["next_liked"]
            chosen = f"auto chose {result.model.kind}: " if auto else ""
            print(f"{chosen}{done[result.model.kind]}; test NDCG@10 {nxt['ndcg@10']:.4f} HR@10 {nxt['hr@10']:.4f} "
                  f"(next item), NDCG@10 {liked['ndcg@10']:.4f} (next liked), delta {test['delta_ndcg@10']:+.4f}; "
                  f"wrote {args.out} and {args.metrics}")
            print(DELTA_MEANING.format(n=test["next_disliked"]["n_cases"]))
        distributed.wait_for_all(ctx)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 5
    except WriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 7
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.teardown(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
