"""Ragged per-user event sequences held in flat numpy arrays.

User ``u``'s events are ``iid[offsets[u]:offsets[u + 1]]`` (and likewise ``feedback``, ``time_bin`` and
``timestamp``), in the order of the data set's ordering rule (oldest first). Item ids start at 1
(0 is padding), feedback is 1 Dislike / 2 Like / 3 Love, time bins start at 1 (0 is padding);
``timestamp`` (unix seconds, float64) is None when the source has none.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DISLIKE, LIKE, LOVE = 1, 2, 3
FEEDBACK_NAMES = {DISLIKE: "Dislike", LIKE: "Like", LOVE: "Love"}


@dataclass(frozen=True)
class Sequences:
    offsets: np.ndarray  # int64, (n_users + 1,)
    iid: np.ndarray  # int64, flat
    feedback: np.ndarray  # int64, flat
    time_bin: np.ndarray  # int64, flat
    timestamp: np.ndarray | None = None  # float64, flat; None when the source has no timestamps

    @classmethod
    def from_lists(cls, iid, feedback=None, time_bin=None) -> "Sequences":
        """Build from Python lists of per-user lists (tests, serving); feedback defaults to Like, bins to 1."""
        lengths = np.array([len(s) for s in iid], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

        def flat(lists, default):
            if lists is None:
                return np.full(offsets[-1], default, dtype=np.int64)
            return np.concatenate([np.asarray(s, dtype=np.int64) for s in lists] or [np.zeros(0, np.int64)])

        return cls(offsets, flat(iid, 0), flat(feedback, LIKE), flat(time_bin, 1))

    def events(self, index: np.ndarray, offsets: np.ndarray) -> "Sequences":
        """The flat events at ``index`` (every field), regrouped by ``offsets``."""
        return Sequences(offsets, self.iid[index], self.feedback[index], self.time_bin[index],
                         None if self.timestamp is None else self.timestamp[index])

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row_of_event(self) -> np.ndarray:
        """For every flat event, the index of the sequence it belongs to."""
        return np.repeat(np.arange(self.n_users), self.lengths)

    def position_of_event(self) -> np.ndarray:
        """For every flat event, its 0-based position inside its sequence."""
        return np.arange(len(self.iid)) - np.repeat(self.offsets[:-1], self.lengths)

    def select(self, keep: np.ndarray) -> "Sequences":
        """Keep the flat events where ``keep`` is True; every sequence stays (possibly shorter)."""
        kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])  # events kept before each flat position
        return self.events(keep, kept_before[self.offsets])

    def take(self, rows: np.ndarray) -> "Sequences":
        """The sequences at ``rows`` (in that order, repeats allowed)."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        idx = np.repeat(self.offsets[:-1][rows] - offsets[:-1], lengths) + np.arange(offsets[-1])
        return self.events(idx, offsets)

    def last(self, n: int) -> "Sequences":
        """The most recent ``n`` events of every sequence."""
        return self.select(self.position_of_event() >= np.repeat(self.lengths - n, self.lengths))

    def padded(self, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Left-padded (n_users, max_len) arrays of the most recent ``max_len`` events: iid, feedback, time_bin."""
        lengths = self.lengths
        recent = self if lengths.max(initial=0) <= max_len else self.last(max_len)
        out = np.zeros((3, self.n_users, max_len), dtype=np.int64)
        ends = max_len * np.arange(1, self.n_users + 1)  # flat index just after each row's last column
        at = np.arange(len(recent.iid)) + np.repeat(ends - recent.offsets[1:], recent.lengths)
        for dst, src in zip(out, (recent.iid, recent.feedback, recent.time_bin)):
            dst.flat[at] = src
        return out[0], out[1], out[2]


def sum_by_owner(values: np.ndarray, owner: np.ndarray, n_owners: int) -> np.ndarray:
    """(n_owners, d): the sum of the rows of ``values`` (n, d) of each owner, 0 for an owner with none; ``owner``
    (n,) ascending, so each owner's rows are one run. Each sum reads its own run alone (the same bits in any batch),
    with np.add.reduceat: ~4x faster than np.add.at on a request's rows."""
    if n_owners == 1 and len(owner):  # one request's rows: one run
        return np.add.reduceat(values, [0], axis=0)
    if len(owner) and np.any(owner[1:] < owner[:-1]):
        raise ValueError("sum_by_owner: owner is not in ascending order")
    out = np.zeros((n_owners, values.shape[1]), dtype=values.dtype)
    if len(owner):
        starts = np.flatnonzero(np.concatenate([[True], owner[1:] != owner[:-1]]))
        out[owner[starts]] = np.add.reduceat(values, starts, axis=0)
    return out
