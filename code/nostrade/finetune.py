"""Fine-tune the current SASRec checkpoint on the event log (the demo's clicks, the service's feedback).

    python -m nostrade.finetune --events data/events.db --checkpoint checkpoints/sasrec.pt --data data/processed

1. Events -> sequences, by make_processed_data.py's rules (nostrade.prep), applied to the training
   interactions and the logged ratings together:
   - only rating events count (Dislike/Like/Love, or 0 = rating cleared); "save for later" is not a rating;
   - titles outside the checkpoint's vocabulary (its iid map) are skipped and counted: a new title can
     only enter through a full retraining, which changes the iid map (prep rules 1 and 5);
   - order per user: the training sequence first, then the logged events by (timestamp, storage order);
     with real timestamps in the data, one stable sort by timestamp (prep rule 2);
   - duplicate (user, title): the latest event wins (prep rule 3); a winning "cleared" event removes the
     title from the sequence;
   - feedback is logged as 1..3 already, so the rating thresholds (rule 4) have nothing to bucket;
   - a logged user whose id is also a training user continues that user's sequence; other users become
     new sequences; uids follow ascending user id (rule 6);
   - time bins by the data's own scheme (rule 7, the same function over the same first period), capped
     at the model's number of bins (later periods share the last bin); all 1 when the data has none.
2. Continue training the checkpoint's weights for a few epochs (nostrade.train.train_sasrec) on the
   training part of the leave-one-out split of those sequences.
3. Evaluate the fine-tuned model and the previous one on the same validation cases (that split's
   validation targets: neither model trained on them). Acceptance rule: the fine-tuned model becomes
   current only if its validation NDCG@10 >= the previous one's - tolerance (default 0: not worse).
4. The new checkpoint is always written first, atomically, beside the current one
   (``<stem>.finetuned-<UTC time>.pt``); only if accepted, the current file is backed up to
   ``<stem>.previous.pt`` and atomically replaced by a copy of the new one, so a reader (the app, the
   service) sees either the old or the new checkpoint, never half of one, and picks it up by its hash.

Exit status: 0 the fine-tuned checkpoint is now current; 1 it was not better, or the log had no usable
events (the previous checkpoint stays current); 2 bad input (missing file, vocabulary mismatch).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from nostrade.atomic import copy, write_json
from nostrade.checkpoint import load_checkpoint, save_checkpoint
from nostrade.dataset import Dataset, load_dataset
from nostrade.evaluate import evaluate
from nostrade.events import CLEARED, RATING_TYPES, EventLog
from nostrade.prep import earlier_duplicates, order_events, time_bins
from nostrade.sequences import Sequences
from nostrade.split import leave_one_out
from nostrade.train import TrainConfig, train_sasrec

METRIC = "ndcg@10"


@dataclass
class FinetuneConfig:
    epochs: int = 5
    lr: float = 3e-4  # below training's 1e-3: nudge the weights, do not retrain them
    warmup: int = 0
    tolerance: float = 0.0  # accept if new NDCG@10 >= previous NDCG@10 - tolerance
    seed: int = 0
    progress: bool = True


@dataclass
class LogSequences:
    """The training data with the logged ratings merged in, and what happened to the log's events."""
    dataset: Dataset
    counts: dict


def _training_timestamps(folder: Path, n_events: int) -> np.ndarray | None:
    table = pq.read_table(folder / "interactions.parquet", columns=["uid", "position", "timestamp"])
    table = table.sort_by([("uid", "ascending"), ("position", "ascending")])
    if len(table) != n_events:
        raise ValueError(f"{folder}: interactions.parquet has {len(table)} rows but sequences.parquet "
                         f"{n_events} events")
    stamps = table.column("timestamp")
    return None if stamps.null_count else stamps.to_numpy().astype(np.int64)


def merge_log(dataset: Dataset, events: pd.DataFrame, train_timestamps: np.ndarray | None = None) -> LogSequences:
    """Append the log's current ratings to the training sequences (the rules in the module docstring).

    ``events``: an ``EventLog.events()`` frame; ``train_timestamps``: the training events' unix times in
    flat sequence order, when the data has them (then ordering and time bins use them).
    """
    seqs = dataset.sequences
    n_items = dataset.n_items
    rating = events[events["feedback_type"].isin(RATING_TYPES)].sort_values(["timestamp", "seq"], kind="stable")
    iid_of_anime = pd.Series(dataset.items["iid"].to_numpy(np.int64), index=dataset.items["anime_id"].to_numpy())
    log_iid = rating["anime_id"].map(iid_of_anime).fillna(0).to_numpy(np.int64)
    unknown = log_iid == 0
    known = rating[~unknown]
    counts = {
        "log_events": int(len(events)),
        "rating_events": int(len(rating)),
        "unknown_title_events": int(unknown.sum()),
        "unknown_titles": int(rating.loc[unknown, "anime_id"].nunique()),
    }

    has_time = train_timestamps is not None
    user_id = np.concatenate([np.repeat(dataset.user_ids.astype(np.int64), seqs.lengths),
                              known["user_id"].to_numpy(np.int64)])
    iid = np.concatenate([seqs.iid, log_iid[~unknown]])
    feedback = np.concatenate([seqs.feedback, known["feedback_type"].to_numpy(np.int64)])
    is_log = np.r_[np.zeros(len(seqs.iid), bool), np.ones(len(known), bool)]
    # A logged time before the data's first one (a client's clock) would move the first time bin: clip it.
    stamps = np.concatenate([train_timestamps, np.maximum(known["timestamp"].to_numpy(np.float64).astype(np.int64),
                                                          train_timestamps.min() if len(train_timestamps) else 0)]) if has_time else None

    user_code, user_values = pd.factorize(user_id, sort=True)
    order = order_events(user_code, stamps)
    user_code, iid, feedback, is_log = user_code[order], iid[order], feedback[order], is_log[order]
    stamps = stamps[order] if has_time else None
    if has_time:
        bins = np.minimum(time_bins(stamps, dataset.meta["time_bins"]["scheme"])[0].astype(np.int64),
                          dataset.n_time_bins)
    else:
        bins = np.ones(len(iid), dtype=np.int64)

    earlier = earlier_duplicates(user_code, iid, timestamp=stamps, n_items=n_items + 1)
    cleared = ~earlier & (feedback == CLEARED)
    keep = ~earlier & ~cleared
    counts.update({
        "replaced_events": int(earlier.sum()),
        "cleared_titles": int(cleared.sum()),
        "log_users": int(known["user_id"].nunique()),
        "training_users_extended": int(np.isin(known["user_id"].unique(), dataset.user_ids).sum()),
        "log_interactions_added": int((keep & is_log).sum()),
    })
    counts["new_users"] = counts["log_users"] - counts["training_users_extended"]

    user_code, iid, feedback, bins = user_code[keep], iid[keep], feedback[keep], bins[keep]
    lengths = np.bincount(user_code, minlength=len(user_values))
    present = lengths > 0
    offsets = np.concatenate([[0], np.cumsum(lengths[present])]).astype(np.int64)
    merged = Sequences(offsets, iid, feedback, bins)
    meta = {**dataset.meta, "finetune_log": counts}
    return LogSequences(Dataset(dataset.items, merged, np.asarray(user_values)[present], meta), counts)


def finetune(events_path, checkpoint_path, data_dir, cfg: FinetuneConfig = FinetuneConfig(),
             report_path=None) -> dict:
    """Fine-tune, compare, and make the new checkpoint current if it is not worse. Returns the report."""
    checkpoint_path, data_dir, events_path = Path(checkpoint_path), Path(data_dir), Path(events_path)
    if not events_path.exists():
        raise FileNotFoundError(f"{events_path}: no such event log")
    dataset = load_dataset(data_dir)
    previous = load_checkpoint(checkpoint_path, expected_iid_map_sha256=dataset.iid_map_hash,
                               expected_n_items=dataset.n_items)
    stamps = _training_timestamps(data_dir, len(dataset.sequences.iid)) if dataset.meta.get("has_timestamps") else None
    merged = merge_log(dataset, EventLog(events_path).events(), stamps)
    report = {"events": str(events_path), "checkpoint": str(checkpoint_path), "data": str(data_dir),
              "log": merged.counts, "config": dataclasses.asdict(cfg), "accepted": False}
    if merged.counts["log_interactions_added"] == 0:
        report["reason"] = "no usable rating events in the log"
        return _finish(report, report_path)

    split = leave_one_out(merged.dataset.sequences)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    train_cfg = TrainConfig(**{**{k: v for k, v in previous.train_cfg.items() if k in known},
                               "epochs": cfg.epochs, "lr": cfg.lr, "warmup": cfg.warmup, "patience": cfg.epochs,
                               "eval_every": 1, "seed": cfg.seed, "resume": False, "progress": cfg.progress})
    n_items = dataset.n_items
    before = evaluate(previous.model.scorer(), split.valid, n_items)
    started = time.perf_counter()
    result = train_sasrec(merged.dataset, previous.model_cfg, train_cfg, split=split,
                          init_state=previous.model.state_dict())
    after = evaluate(result.model.scorer(), split.valid, n_items)
    accepted = after[METRIC] >= before[METRIC] - cfg.tolerance
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    new_path = checkpoint_path.with_name(f"{checkpoint_path.stem}.finetuned-{stamp}{checkpoint_path.suffix}")
    save_checkpoint(new_path, result.model, previous.model_cfg, train_cfg, merged.dataset.meta,
                    {"valid": after, "previous_valid": before, "best_epoch": result.best_epoch,
                     "finetuned_from": previous.metrics})
    report.update({"valid_previous": before, "valid_finetuned": after, "accepted": accepted,
                   "rule": f"accept if valid {METRIC} of the fine-tuned model >= previous - {cfg.tolerance}",
                   "finetuned_checkpoint": str(new_path), "best_epoch": result.best_epoch,
                   "seconds": time.perf_counter() - started})
    if accepted:
        copy(checkpoint_path, checkpoint_path.with_name(f"{checkpoint_path.stem}.previous{checkpoint_path.suffix}"))
        copy(new_path, checkpoint_path)
        report["previous_checkpoint"] = str(checkpoint_path.with_name(
            f"{checkpoint_path.stem}.previous{checkpoint_path.suffix}"))
    else:
        report["reason"] = f"valid {METRIC} {after[METRIC]:.4f} < previous {before[METRIC]:.4f}"
    return _finish(report, report_path)


def _finish(report: dict, report_path) -> dict:
    if report_path is not None:
        write_json(report_path, report)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", default="data/events.db", help="SQLite event log (nostrade.events)")
    parser.add_argument("--checkpoint", default="checkpoints/sasrec.pt", help="the current checkpoint")
    parser.add_argument("--data", default="data/processed", help="the processed folder it was trained on")
    parser.add_argument("--report", default="artifacts/finetune.json", help="JSON report of the run")
    defaults = FinetuneConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--tolerance", type=float, default=defaults.tolerance,
                        help="accept if new NDCG@10 >= previous - tolerance (default 0: not worse)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.lr <= 0 or args.tolerance < 0:
        print(f"error: --epochs must be >= 1, --lr > 0, --tolerance >= 0 (got {args.epochs}, {args.lr}, "
              f"{args.tolerance})", file=sys.stderr)
        return 2
    cfg = FinetuneConfig(args.epochs, args.lr, args.warmup, args.tolerance, args.seed, args.progress)
    try:
        report = finetune(args.events, args.checkpoint, args.data, cfg, args.report)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log = report["log"]
    print(f"log: {log['rating_events']} rating events from {log.get('log_users', 0)} users, "
          f"{log['unknown_title_events']} on titles outside the model's vocabulary (skipped), "
          f"{log.get('log_interactions_added', 0)} interactions added")
    if "valid_finetuned" in report:
        print(f"valid {METRIC}: previous {report['valid_previous'][METRIC]:.4f}, fine-tuned "
              f"{report['valid_finetuned'][METRIC]:.4f} -> "
              + (f"accepted: {args.checkpoint} replaced (previous kept at {report['previous_checkpoint']})"
                 if report["accepted"] else f"rejected: {args.checkpoint} unchanged; "
                                            f"candidate kept at {report['finetuned_checkpoint']}"))
    else:
        print(f"nothing done: {report['reason']}")
    print(f"wrote {args.report}")
    return 0 if report["accepted"] else 1


if __name__ == "__main__":
    sys.exit(main())
