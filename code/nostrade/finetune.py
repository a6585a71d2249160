"""Fine-tune the current checkpoint on the event log (the demo's clicks, the service's feedback).

    python -m nostrade.finetune --events data/events.db --checkpoint checkpoints/model.pt --data data/processed

1. Events -> sequences: every user's history as nostrade.history defines it (training events, then the
   logged ratings; the latest rating of a title wins; a cleared rating removes the title), with:
   - titles outside the checkpoint's vocabulary (its iid map) skipped and counted: a new title can
     only enter through a full retraining, which changes the iid map (prep rules 1 and 5);
   - a logged user whose id is also a training user continues that user's sequence; other users become
     new sequences; uids follow ascending user id (rule 6);
   - logged events' time bins by the data's own scheme (nostrade.prep.time_bins_of: the same first period,
     later periods share the last bin); all 1 when the data has none.
2. On the training part of the split of those sequences (nostrade.split.split_of): a SASRec checkpoint's
   weights train for a few more epochs (nostrade.sasrec_training.train_sasrec); an EASE checkpoint is refitted
   (closed form, the same l2) and a two-stage ranker is refitted (its generators and LightGBM, with its options:
   nostrade.train.refit_ranker); --epochs, --lr and --warmup apply to SASRec only. Any other kind is refused
   (exit 2) in one line naming what to run instead.
3. Evaluate the fine-tuned model and the previous one on the same validation cases (that split's
   validation targets: neither model trained on them). Acceptance rule: the fine-tuned model becomes
   current only if its validation NDCG@10 >= the previous one's - tolerance (default 0: not worse).
4. The new checkpoint is always written first, atomically, beside the current one, under a name no other run
   uses (``<stem>.finetuned-<UTC time to the microsecond>-<pid>.pt``); it records its lineage (the
   content_sha256 of the model it was fine-tuned from, and of that model's own parents), which is how the app
   tells a fine-tune of the current checkpoint from a stale one (served_checkpoint). Only if accepted, the
   current file is backed up to ``<stem>.previous.pt`` and atomically replaced by a copy of the new one, so a
   reader (the app, the service) sees either the old or the new checkpoint, never half of one, and picks it
   up by its hash. One run at a time: a run holds a lock on the folder of the file it replaces (a second run
   stops at once, exit 8), and installs only if neither the checkpoint it read nor the file it replaces
   changed while it trained (e.g. a `make train` meanwhile: exit 8, the candidate kept), so a backup is
   always of the model the candidate was compared with, and the original is never lost.
   With ``--out`` the accepted model goes to that file instead and the checkpoint is left as it is (the
   app's "Retrain for everyone" writes checkpoints/model.finetuned.pt, never a file git tracks).

The event log is only read: it is opened read-only, and a file that is not a nostrade event log (not
SQLite, another application's database, an events table of another shape) is refused, never modified.

Exit status (every failure prints one line 'error: ...' naming the file; the current checkpoint is never
touched unless the status is 0):
  0  accepted: the fine-tuned checkpoint is now current
  1  an unexpected error (a bug: Python's traceback)
  2  bad input: a missing file, a processed folder that does not load, a checkpoint of another vocabulary
  3  not accepted: the fine-tuned model was worse on validation (the candidate is kept beside it)
  4  nothing to do: the log holds no usable rating events
  5  unusable checkpoint: empty, a folder, not a checkpoint (e.g. a pickle carrying code: refused, never
     run), damaged (checksum) or holding NaN / inf weights
  6  unusable event log: not SQLite, not a nostrade event log, damaged
  7  cannot write: the checkpoint's folder is read-only, the disk is full...
  8  busy: another fine-tune is writing to that folder, or the checkpoint was replaced meanwhile (nothing installed)
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import fcntl
import functools
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nostrade.atomic import WriteError, copy, write_json
from nostrade.checkpoint import Checkpoint, CheckpointError, check_vocabulary, read_checkpoint, save_checkpoint
from nostrade.dataset import Dataset, load_dataset
from nostrade.evaluate import evaluate
from nostrade.events import RATING_TYPES, EventLog, NotAnEventLog
from nostrade.history import merged, training_events
from nostrade.prep import time_bins_of
from nostrade.registry import load_checkpoint
from nostrade.sasrec_training import TrainConfig, train_sasrec
from nostrade.sequences import Sequences
from nostrade.split import split_of
from nostrade.train import fit_ease, refit_ranker

METRIC = "ndcg@10"
FINETUNED_KINDS = ("sasrec", "ease", "ranker")
EXIT_ACCEPTED, EXIT_CRASH, EXIT_BAD_INPUT, EXIT_REJECTED, EXIT_NO_EVENTS, EXIT_BAD_CHECKPOINT, EXIT_BAD_LOG, \
    EXIT_CANNOT_WRITE, EXIT_BUSY = range(9)


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


def merge_log(dataset: Dataset, events: pd.DataFrame) -> LogSequences:
    """The training sequences with the log's current ratings merged in (nostrade.history's one definition of a
    history), titles outside the vocabulary skipped and counted; ``events``: an ``EventLog.events()`` frame."""
    iid_of_item = pd.Series(dataset.items["iid"].to_numpy(np.int64), index=dataset.items["item_id"].to_numpy())
    rating = events[events["feedback_type"].isin(RATING_TYPES)]
    unknown = ~rating["item_id"].isin(iid_of_item.index)
    training = training_events(dataset)
    training["time_bin"] = dataset.sequences.time_bin
    frame, merge_counts = merged(training, events[~events.index.isin(rating.index[unknown])])
    logged = frame["logged"].to_numpy()
    bins = frame["time_bin"].to_numpy(np.float64, copy=True)
    bins[logged] = time_bins_of(frame.loc[logged, "timestamp"].to_numpy(np.float64), dataset.meta["time_bins"])
    log_users = rating.loc[~unknown, "user_id"].unique()
    counts = {
        "log_events": int(len(events)),
        "rating_events": int(len(rating)),
        "unknown_title_events": int(unknown.sum()),
        "unknown_titles": int(rating.loc[unknown, "item_id"].nunique()),
        **merge_counts,
        "log_users": int(len(log_users)),
        "training_users_extended": int(np.isin(log_users, dataset.user_ids).sum()),
        "log_interactions_added": int(logged.sum()),
    }
    counts["new_users"] = counts["log_users"] - counts["training_users_extended"]
    user_ids, lengths = np.unique(frame["user_id"].to_numpy(np.int64), return_counts=True)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    sequences = Sequences(offsets, frame["item_id"].map(iid_of_item).to_numpy(np.int64),
                          frame["feedback"].to_numpy(np.int64), bins.astype(np.int64))
    meta = {**dataset.meta, "finetune_log": counts}
    return LogSequences(Dataset(dataset.items, sequences, user_ids, meta), counts)


def read_log(path: Path) -> pd.DataFrame:
    """Every event of an existing log, read without writing to it (NotAnEventLog if it is not one or is damaged)."""
    try:
        log = EventLog(path, read_only=True)
        try:
            return log.events()
        finally:
            log.close()
    except (sqlite3.Error, RuntimeError) as err:  # RuntimeError: a schema newer than this code
        raise NotAnEventLog(f"{path}: cannot read the event log ({err})") from None


StepCallback = Callable[[float, str], None]  # (fraction done, what is happening)


class Busy(RuntimeError):
    """Another fine-tune holds the lock on the folder the accepted model goes to, or a file changed under this one."""


def file_identity(path: Path) -> tuple | None:
    """(device, inode, size, mtime): an atomic replacement (os.replace) always changes it; None when absent."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


@contextlib.contextmanager
def exclusive(folder: Path):
    """Hold the fine-tune lock of ``folder`` (an flock on the folder itself: no lock file to leave behind, freed
    when the process dies); Busy at once if another run holds it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
    except OSError as err:
        raise WriteError(f"cannot write {folder}: {err.strerror or err}") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"{folder}: another fine-tune is writing checkpoints here; nothing was done (run again "
                       "when it has finished)") from None
        yield
    finally:
        os.close(fd)


def finetune(events_path, checkpoint_path, data_dir, cfg: FinetuneConfig = FinetuneConfig(),
             report_path=None, out_path=None, on_step: StepCallback | None = None) -> dict:
    """Fine-tune, compare, and make the new checkpoint current if it is not worse. Returns the report.

    ``out_path``: the file an accepted model becomes (default: ``checkpoint_path`` itself, replaced);
    ``on_step(fraction, text)``: called as the run goes (the app's progress bar). One run at a time per folder
    of ``out_path`` (Busy otherwise), and an accepted model is installed only if neither ``checkpoint_path``
    nor ``out_path`` changed while it trained (else Busy, the candidate kept)."""
    checkpoint_path, data_dir, events_path = Path(checkpoint_path), Path(data_dir), Path(events_path)
    out_path = checkpoint_path if out_path is None else Path(out_path)
    step = on_step or (lambda fraction, text: None)
    if not events_path.exists():
        raise FileNotFoundError(f"{events_path}: no such event log")
    with exclusive(out_path.parent):
        started_as = {path: file_identity(path) for path in (checkpoint_path, out_path)}
        step(0.0, "Reading the event log…")
        dataset = load_dataset(data_dir)
        previous = load_checkpoint(checkpoint_path, expected_iid_map_sha256=dataset.iid_map_hash,
                                   expected_n_items=dataset.n_items)
        if file_identity(checkpoint_path) != started_as[checkpoint_path]:
            raise Busy(f"{checkpoint_path}: replaced while it was being read; nothing was done (run again)")
        if previous.model.kind not in FINETUNED_KINDS:
            raise ValueError(f"{checkpoint_path}: a {previous.model.kind} checkpoint is not fine-tuned here (only "
                             f"{', '.join(FINETUNED_KINDS)} are); retrain it with `python -m nostrade.train "
                             f"--model {previous.model.kind}`")
        merged = merge_log(dataset, read_log(events_path))
        report = {"events": str(events_path), "checkpoint": str(checkpoint_path), "data": str(data_dir),
                  "log": merged.counts, "config": dataclasses.asdict(cfg), "accepted": False, "installed": None}
        if merged.counts["log_interactions_added"] == 0:
            report["reason"] = "no usable rating events in the log"
            return _finish(report, report_path)
        report.update(_train_and_compare(previous, merged.dataset, cfg, checkpoint_path, step))
        if report["accepted"]:
            _install(report, out_path, started_as)
        else:
            report["reason"] = (f"valid {METRIC} {report['valid_finetuned'][METRIC]:.4f} < previous "
                                f"{report['valid_previous'][METRIC]:.4f}")
        step(1.0, "Done.")
        return _finish(report, report_path)


def _train_and_compare(previous: Checkpoint, dataset: Dataset, cfg: FinetuneConfig, checkpoint_path: Path,
                       step: StepCallback) -> dict:
    """Fine-tune ``previous`` on ``dataset``, validate both, write the candidate beside the checkpoint under a
    name no other run uses; the report's fields."""
    split = split_of(dataset)
    step(0.1, "Validating the current model…")
    before = evaluate(previous.model.score, split.valid, dataset.n_items)
    started = time.perf_counter()
    if previous.model.kind == "ease":
        step(0.3, "Refitting EASE on the training data and the log…")
        train_cfg, result = previous.train_cfg, fit_ease(dataset, split, previous.model.l2)
    elif previous.model.kind == "ranker":
        step(0.3, "Refitting the ranker (its generators and LightGBM) on the training data and the log…")
        train_cfg, result = previous.train_cfg, refit_ranker(previous.model, dataset, split, previous.train_cfg)
    else:
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        train_cfg = TrainConfig(**{**{k: v for k, v in previous.train_cfg.items() if k in known},
                                   "epochs": cfg.epochs, "lr": cfg.lr, "warmup": cfg.warmup, "patience": cfg.epochs,
                                   "eval_every": 1, "seed": cfg.seed, "resume": False, "progress": cfg.progress})
        result = train_sasrec(dataset, previous.model.cfg, train_cfg, split=split,
                              init_state=previous.model.state_dict(),
                              on_epoch=lambda record, epochs: step(0.2 + 0.6 * record["epoch"] / epochs,
                                                                   f"Fine-tuning SASRec: epoch {record['epoch']} "
                                                                   f"of {epochs}…"))
    step(0.85, "Validating the retrained model…")
    after = evaluate(result.model.score, split.valid, dataset.n_items)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    new_path = checkpoint_path.with_name(f"{checkpoint_path.stem}.finetuned-{stamp}-{os.getpid()}"
                                         f"{checkpoint_path.suffix}")
    lineage = [*previous.lineage, previous.content_sha256]
    content = save_checkpoint(new_path, result.model, train_cfg, dataset.meta,
                              {"valid": after, "previous_valid": before, "best_epoch": result.best_epoch,
                               "finetuned_from": previous.metrics,
                               # the settings chosen on validation for the model it was fine-tuned from
                               **{k: previous.metrics[k] for k in ("served",) if k in previous.metrics}},
                              lineage=lineage)
    accepted = after[METRIC] >= before[METRIC] - cfg.tolerance
    return {"valid_previous": before, "valid_finetuned": after, "accepted": accepted,
            "rule": f"accept if valid {METRIC} of the fine-tuned model >= previous - {cfg.tolerance}",
            "finetuned_checkpoint": str(new_path), "finetuned_content_sha256": content, "parent_content_sha256":
            previous.content_sha256, "best_epoch": result.best_epoch, "seconds": time.perf_counter() - started}


def _install(report: dict, out_path: Path, started_as: dict) -> None:
    """The accepted candidate becomes ``out_path`` (the old one backed up to ``<stem>.previous``), unless a file
    this run read or replaces changed since it started: then nothing is installed and Busy is raised."""
    changed = [str(path) for path, identity in started_as.items() if file_identity(path) != identity]
    if changed:
        raise Busy(f"{changed[0]}: changed while fine-tuning (another writer replaced it); the not-worse candidate "
                   f"is not installed, kept at {report['finetuned_checkpoint']}")
    if out_path.exists():
        backup = out_path.with_name(f"{out_path.stem}.previous{out_path.suffix}")
        copy(out_path, backup)
        report["previous_checkpoint"] = str(backup)
    copy(report["finetuned_checkpoint"], out_path)
    report["current_checkpoint"] = report["installed"] = str(out_path)


@dataclass(frozen=True)
class ServedChoice:
    path: Path
    reason: str | None = None  # why the fine-tuned file is not served; None when nothing is amiss


def served_checkpoint(checkpoint, finetuned, data_dir=None) -> ServedChoice:
    """The checkpoint to serve: ``finetuned`` when it descends from ``checkpoint`` (its lineage holds the
    checkpoint's content_sha256: a fine-tune of a model since replaced is stale, however new the file) and is
    whole and of the data's vocabulary (``data_dir``'s meta.json); else ``checkpoint``, with the reason. A
    checkpoint that cannot be read itself is returned as it is (loading it shows its own error). Cached per
    version (inode, size, mtime) of the files."""
    checkpoint, finetuned = Path(checkpoint), Path(finetuned)
    meta = None if data_dir is None else Path(data_dir) / "meta.json"
    if file_identity(finetuned) is None:
        return ServedChoice(checkpoint)
    return _served(checkpoint, finetuned, meta, file_identity(checkpoint), file_identity(finetuned),
                   file_identity(meta) if meta is not None else None)


@functools.lru_cache(maxsize=8)
def _served(checkpoint: Path, finetuned: Path, meta: Path | None, *versions) -> ServedChoice:
    try:
        parent = read_checkpoint(checkpoint).get("content_sha256")
    except (FileNotFoundError, CheckpointError):
        return ServedChoice(checkpoint)
    try:
        expected = json.loads(meta.read_text(encoding="utf-8")) if meta is not None and meta.exists() else {}
        payload = read_checkpoint(finetuned)
        check_vocabulary(payload, finetuned, expected.get("iid_map_sha256"), expected.get("n_items"))
    except (OSError, ValueError) as err:  # CheckpointError and CheckpointMismatch are ValueErrors
        return ServedChoice(checkpoint, f"{finetuned.name} is not served ({str(err).splitlines()[0]}); serving "
                                        f"{checkpoint.name}, the last good model")
    lineage = payload.get("lineage") or []
    if parent is None or parent not in lineage:
        made_from = f"it was fine-tuned from {str(lineage[-1])[:12]}…" if lineage else "it records no parent model"
        return ServedChoice(checkpoint, f"{finetuned.name} is not served: {made_from}, not from the current "
                                        f"{checkpoint.name} ({str(parent)[:12]}…); serving {checkpoint.name}")
    return ServedChoice(finetuned)


def _finish(report: dict, report_path) -> dict:
    if report_path is not None:
        write_json(report_path, report)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", default="data/events.db", help="SQLite event log (nostrade.events; read only)")
    parser.add_argument("--checkpoint", default="checkpoints/model.pt", help="the current checkpoint")
    parser.add_argument("--data", default="data/processed", help="the processed folder it was trained on")
    parser.add_argument("--report", default="artifacts/finetune.json", help="JSON report of the run")
    parser.add_argument("--out", default=None,
                        help="the file an accepted model becomes (default: the checkpoint itself, replaced)")
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
        return EXIT_BAD_INPUT
    cfg = FinetuneConfig(args.epochs, args.lr, args.warmup, args.tolerance, args.seed, args.progress)
    try:
        report = finetune(args.events, args.checkpoint, args.data, cfg, args.report, args.out)
    except CheckpointError as e:
        return fail(e, EXIT_BAD_CHECKPOINT)
    except NotAnEventLog as e:
        return fail(e, EXIT_BAD_LOG)
    except WriteError as e:
        return fail(e, EXIT_CANNOT_WRITE)
    except Busy as e:
        return fail(e, EXIT_BUSY)
    except (FileNotFoundError, ValueError) as e:
        return fail(e, EXIT_BAD_INPUT)
    log = report["log"]
    print(f"log: {log['rating_events']} rating events from {log.get('log_users', 0)} users, "
          f"{log['unknown_title_events']} on titles outside the model's vocabulary (skipped), "
          f"{log.get('log_interactions_added', 0)} interactions added")
    if "valid_finetuned" in report:
        print(f"valid {METRIC}: previous {report['valid_previous'][METRIC]:.4f}, fine-tuned "
              f"{report['valid_finetuned'][METRIC]:.4f} -> "
              + (f"accepted: installed {report['installed']} (the fine-tuned model "
                 f"{report['finetuned_content_sha256'][:12]}…)"
                 + (f" (previous kept at {report['previous_checkpoint']})" if "previous_checkpoint" in report else "")
                 if report["accepted"] else f"rejected: {args.out or args.checkpoint} unchanged; "
                                            f"candidate kept at {report['finetuned_checkpoint']}"))
    else:
        print(f"nothing done: {report['reason']}")
    print(f"wrote {args.report}")
    if report["accepted"]:
        return EXIT_ACCEPTED
    return EXIT_REJECTED if "valid_finetuned" in report else EXIT_NO_EVENTS


def fail(error: Exception, status: int) -> int:
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    print(f"error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
