"""A person's history, defined once: the app, the API and fine-tuning read it from here.

A user's events are their training events (the processed data set, in its order) followed by their logged
ratings (nostrade.events: Dislike / Like / Love, or 0 = rating cleared; "save for later" is not a rating) in
(timestamp, storage) order. When every one of these events has a timestamp, one stable sort by timestamp
orders them instead (prep's rule 2). Then, per title, the last one stored wins (its feedback and its place in
the order): a logged event over a training one, a later logged event over an earlier one whatever their
timestamps (a correction always wins); a title whose winning event clears its rating is gone, also when it
came from the training data.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from nostrade.dataset import Dataset
from nostrade.events import CLEARED, RATING_TYPES, EventLog
from nostrade.sequences import Sequences

COLUMNS = ["user_id", "item_id", "feedback", "timestamp", "logged"]


def training_events(dataset: Dataset, sequences: Sequences | None = None,
                    user_ids: np.ndarray | None = None) -> pd.DataFrame:
    """The data set's events as a history frame, in sequence order; or those of other ``sequences`` (e.g. a
    split's histories) of the data set's items, with their ``user_ids``."""
    seqs = dataset.sequences if sequences is None else sequences
    users = np.repeat(np.asarray(dataset.user_ids if user_ids is None else user_ids, dtype=np.int64), seqs.lengths)
    item_of_iid = np.concatenate([[0], dataset.items["item_id"].to_numpy(np.int64)])
    stamps = seqs.timestamp if seqs.timestamp is not None else np.full(len(seqs.iid), np.nan)
    return pd.DataFrame({"user_id": users, "item_id": item_of_iid[seqs.iid], "feedback": seqs.feedback,
                         "timestamp": stamps.astype(np.float64), "logged": np.zeros(len(users), dtype=bool)})


def merged(training: pd.DataFrame, log: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Every user's current history (the rules above), grouped by user in ascending user id, oldest first.

    ``training``: a ``training_events`` frame (extra columns are kept, missing for logged events); ``log``: an
    ``EventLog.events()`` frame. Also returns the counts of events a later one replaced and of titles cleared.
    """
    rating = log[log["feedback_type"].isin(RATING_TYPES)].sort_values(["timestamp", "seq"], kind="stable")
    frame = pd.concat([training, pd.DataFrame({
        "user_id": rating["user_id"].to_numpy(np.int64), "item_id": rating["item_id"].to_numpy(np.int64),
        "feedback": rating["feedback_type"].to_numpy(np.int64), "timestamp": rating["timestamp"].to_numpy(np.float64),
        "logged": np.ones(len(rating), dtype=bool)})], ignore_index=True)
    stored = pd.Series(np.concatenate([np.arange(len(training)), len(training) + rating["seq"].to_numpy(np.int64)]))
    keys = ["user_id", "timestamp"] if frame["timestamp"].notna().all() else ["user_id"]
    order = frame.sort_values(keys, kind="stable").index.to_numpy()
    frame, stored = frame.iloc[order].reset_index(drop=True), stored.iloc[order].reset_index(drop=True)
    latest = stored == stored.groupby([frame["user_id"], frame["item_id"]]).transform("max")
    cleared = latest & (frame["feedback"] == CLEARED)
    counts = {"replaced_events": int((~latest).sum()), "cleared_titles": int(cleared.sum())}
    return frame[latest & ~cleared].reset_index(drop=True), counts


class UserHistories:
    """Each user's current history: their training events, then the event log (read on every call, so a new
    rating counts at once, in any process)."""

    def __init__(self, dataset: Dataset, events: EventLog):
        self.dataset, self.events = dataset, events
        self.row_of_user = pd.Index(np.asarray(dataset.user_ids, dtype=np.int64))

    @property
    def n_training_users(self) -> int:
        return len(self.row_of_user)

    def frame(self, user_id: int) -> pd.DataFrame:
        """The user's history (COLUMNS), oldest first; empty for a stranger."""
        rows = self.row_of_user.get_indexer([user_id])
        rows = rows[rows >= 0]
        training = training_events(self.dataset, self.dataset.sequences.take(rows), np.full(len(rows), user_id))
        return merged(training, self.events.events(user_id))[0][COLUMNS]

    def of(self, user_id: int) -> tuple[list[tuple], int, int]:
        """(events oldest first (``as_events``), n from training, n from the log)."""
        frame = self.frame(user_id)
        n_logged = int(frame["logged"].sum())
        return as_events(frame), len(frame) - n_logged, n_logged


def as_events(frame: pd.DataFrame) -> list[tuple]:
    """A history frame -> predict's events (item_id, feedback, timestamp), timestamps only when every event has
    one (else predict keeps the frame's order)."""
    stamps = frame["timestamp"].to_numpy(np.float64)
    stamps = stamps.tolist() if not np.isnan(stamps).any() else [None] * len(stamps)
    return list(zip(frame["item_id"].tolist(), frame["feedback"].tolist(), stamps))
