"""Leave-one-out, as ../shared/EVAL.md defines it, for data whose order is time and for data whose order is not.

Order is time (``order_is_time``, from the processed folder's meta.json): per user, the last event is the test
target, the one before it the validation target, the rest is training; next liked = the last Like/Love event
(later events stay in the history); next disliked = the last event when it is a Dislike (history: the events
before it).

Order is not time (e.g. the Kaggle anime ratings, in anime_id order): the same rules over a seeded random
permutation of each user's events, so the test and validation targets are random events, the next liked
target a random Like/Love event, the next disliked target a random Dislike (history: every other event), and
every history comes in an order that carries no information.

Users with fewer than 3 events are never evaluated; their whole sequence is training data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nostrade.sequences import DISLIKE, Sequences

MIN_EVAL_LENGTH = 3


@dataclass(frozen=True)
class EvalCases:
    """One ranking case per row: a history and the item to find."""
    users: np.ndarray  # row index into the full Sequences
    history: Sequences
    target: np.ndarray  # iid
    target_feedback: np.ndarray

    def __len__(self) -> int:
        return len(self.target)


@dataclass(frozen=True)
class LeaveOneOut:
    train: Sequences  # every user's training part (all users, same row order)
    valid: EvalCases  # history = train part
    test: EvalCases  # next item: history = train + validation events
    test_liked: EvalCases  # next liked: a Like/Love event, history = every other event
    test_disliked: EvalCases  # a Dislike (the last event, when order is time); see the module docstring
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


def _last_where(seqs: Sequences, event: np.ndarray) -> np.ndarray:
    """Per user, the position of the last event where ``event`` is True (-1 where none)."""
    last = np.full(seqs.n_users, -1)
    np.maximum.at(last, seqs.row_of_event()[event], seqs.position_of_event()[event])
    return last


def leave_one_out(seqs: Sequences, order_is_time: bool = True, seed: int = 0) -> LeaveOneOut:
    if not order_is_time:
        seqs = permuted(seqs, seed)
    lengths = seqs.lengths
    pos = seqs.position_of_event()
    length_of_event = np.repeat(lengths, lengths)
    evaluated = lengths >= MIN_EVAL_LENGTH
    evaluated_event = np.repeat(evaluated, lengths)
    users = np.flatnonzero(evaluated)

    train = seqs.select(~evaluated_event | (pos < length_of_event - 2))
    valid = _cases(seqs, users, lengths[users] - 2, pos < length_of_event - 2)
    test = _cases(seqs, users, lengths[users] - 1, pos < length_of_event - 1)

    last_liked = _last_where(seqs, evaluated_event & (seqs.feedback != DISLIKE))
    liked_users = np.flatnonzero(last_liked >= 0)
    test_liked = _cases(seqs, liked_users, last_liked[liked_users], pos != np.repeat(last_liked, lengths))

    if order_is_time:
        last_flat = seqs.offsets[1:] - 1
        disliked_users = users[seqs.feedback[last_flat[users]] == DISLIKE]
        test_disliked = _cases(seqs, disliked_users, lengths[disliked_users] - 1, pos < length_of_event - 1)
    else:
        last_disliked = _last_where(seqs, evaluated_event & (seqs.feedback == DISLIKE))
        disliked_users = np.flatnonzero(last_disliked >= 0)
        test_disliked = _cases(seqs, disliked_users, last_disliked[disliked_users],
                               pos != np.repeat(last_disliked, lengths))
    return LeaveOneOut(train, valid, test, test_liked, test_disliked, order_is_time)


def split_of(dataset) -> LeaveOneOut:
    """The data set's split: by time or by seeded random events, as its meta.json's ``order_is_time`` says."""
    return leave_one_out(dataset.sequences, dataset.order_is_time)
