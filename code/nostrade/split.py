"""Leave-one-out, as ../shared/EVAL.md defines it, for data whose order is time and for data whose order is not.

Every target is a held-out event: none is ever among its user's training events (tests/test_split.py checks it).

Order is time (``order_is_time``, from the processed folder's meta.json): per user, the last event is the test
target, the one before it the validation target, the rest is training. The test events are grouped by their own
feedback: next liked = the test events that are Like/Love, next disliked = the test events that are Dislikes (both
with the test history: every event before them).

Order is not time (e.g. the Kaggle anime ratings, in anime_id order): each user with a Dislike and at least
MIN_EVAL_LENGTH other events has one random Dislike held out (``test_disliked``: history = the user's training
events); of the rest, in a seeded random order, the last event is the test target and the one before it the
validation target. The held-out Dislike is in no training part and no history. Next liked = the test events that
are Like/Love. The random order of a user's events depends on the seed and that user's own events only (a key per
event from the seed, the user id and the event's position), so adding other people's events (a fine-tune's log)
moves nobody else's held-out events; every history comes in an order that carries no information.

Users with fewer than 3 events (not counting a held-out Dislike) are never evaluated; their whole sequence is
training data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nostrade.sequences import DISLIKE, Sequences

MIN_EVAL_LENGTH = 3
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # mixes the position into the user's hash before hashing again


@dataclass(frozen=True)
class EvalCases:
    """One ranking case per row: a history and the item to find."""
    users: np.ndarray  # row index into the full Sequences
    history: Sequences
    target: np.ndarray  # iid
    target_feedback: np.ndarray

    def __len__(self) -> int:
        return len(self.target)

    def where(self, keep: np.ndarray) -> "EvalCases":
        """The cases where ``keep`` is True."""
        rows = np.flatnonzero(keep)
        return EvalCases(self.users[rows], self.history.take(rows), self.target[rows], self.target_feedback[rows])


@dataclass(frozen=True)
class LeaveOneOut:
    train: Sequences  # every user's training part (all users, same row order)
    valid: EvalCases  # history = train part
    test: EvalCases  # next item: history = train + validation events
    test_liked: EvalCases  # the test events that are Like/Love
    test_disliked: EvalCases  # held-out Dislikes (see the module docstring); lower is better
    order_is_time: bool = True


def _cases(seqs: Sequences, users: np.ndarray, target_pos: np.ndarray, keep: np.ndarray) -> EvalCases:
    """Cases for ``users`` whose target is at ``target_pos``; ``keep`` marks the flat events of the history."""
    flat_target = seqs.offsets[users] + target_pos
    history = seqs.select(keep).take(users)
    return EvalCases(users, history, seqs.iid[flat_target], seqs.feedback[flat_target])


def permuted(seqs: Sequences, seed: int) -> Sequences:
    """Each user's events in a seeded random order (an event keeps its feedback, time bin and timestamp)."""
    key = np.random.default_rng(seed).random(len(seqs.iid))
    return seqs.events(np.lexsort((key, seqs.row_of_event())), seqs.offsets)


def event_keys(seqs: Sequences, seed: int, user_ids: np.ndarray | None = None) -> np.ndarray:
    """A pseudo-random uint64 per event from the seed, its user's id and its position in the user's sequence only:
    stable under other people's additions, and blind to the titles (swapping a held-out title moves nothing)."""
    users = np.arange(seqs.n_users) if user_ids is None else np.asarray(user_ids)
    seed_hash = pd.util.hash_array(np.array([seed], dtype=np.int64))[0]  # numbers hash without hash_key: mix it in
    user_hash = pd.util.hash_array(pd.util.hash_array(users) ^ seed_hash)[seqs.row_of_event()]
    return pd.util.hash_array(user_hash ^ (seqs.position_of_event().astype(np.uint64) * _GOLDEN))


def stable_permuted(seqs: Sequences, seed: int, user_ids: np.ndarray | None = None) -> Sequences:
    """Each user's events in a random order that depends on the seed and that user's own events only."""
    return seqs.events(np.lexsort((event_keys(seqs, seed, user_ids), seqs.row_of_event())), seqs.offsets)


def _first_where(seqs: Sequences, event: np.ndarray) -> np.ndarray:
    """Per user, the position of the first event where ``event`` is True (-1 where none)."""
    first = np.full(seqs.n_users, np.iinfo(np.int64).max)
    np.minimum.at(first, seqs.row_of_event()[event], seqs.position_of_event()[event])
    return np.where(first == np.iinfo(np.int64).max, -1, first)


def _last_two_held_out(seqs: Sequences) -> tuple[Sequences, EvalCases, EvalCases, np.ndarray]:
    """The training part, validation and test cases (the last two events of each user with enough), and the
    evaluated users."""
    lengths = seqs.lengths
    pos = seqs.position_of_event()
    length_of_event = np.repeat(lengths, lengths)
    evaluated = lengths >= MIN_EVAL_LENGTH
    users = np.flatnonzero(evaluated)
    train = seqs.select(~np.repeat(evaluated, lengths) | (pos < length_of_event - 2))
    valid = _cases(seqs, users, lengths[users] - 2, pos < length_of_event - 2)
    test = _cases(seqs, users, lengths[users] - 1, pos < length_of_event - 1)
    return train, valid, test, users


def leave_one_out(seqs: Sequences, order_is_time: bool = True, seed: int = 0,
                  user_ids: np.ndarray | None = None) -> LeaveOneOut:
    """``user_ids``: each row's user id (stable random order where the order is not time; default the row)."""
    if order_is_time:
        train, valid, test, _ = _last_two_held_out(seqs)
        return LeaveOneOut(train, valid, test, test.where(test.target_feedback != DISLIKE),
                           test.where(test.target_feedback == DISLIKE), order_is_time)
    seqs = stable_permuted(seqs, seed, user_ids)
    first_dislike = _first_where(seqs, seqs.feedback == DISLIKE)  # a random one: the order is random
    holds_one = (first_dislike >= 0) & (seqs.lengths > MIN_EVAL_LENGTH)
    held = np.repeat(np.where(holds_one, first_dislike, -1), seqs.lengths) == seqs.position_of_event()
    rest = seqs.select(~held)
    train, valid, test, _ = _last_two_held_out(rest)
    disliked_users = np.flatnonzero(holds_one)
    flat_held = seqs.offsets[disliked_users] + first_dislike[disliked_users]
    test_disliked = EvalCases(disliked_users, train.take(disliked_users), seqs.iid[flat_held],
                              seqs.feedback[flat_held])
    return LeaveOneOut(train, valid, test, test.where(test.target_feedback != DISLIKE), test_disliked, order_is_time)


def split_of(dataset) -> LeaveOneOut:
    """The data set's split: by time or by seeded random events, as its meta.json's ``order_is_time`` says."""
    return leave_one_out(dataset.sequences, dataset.order_is_time, user_ids=dataset.user_ids)
