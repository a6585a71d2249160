"""Leave-one-out by time, as ../shared/EVAL.md defines it.

Per user (sequences already in time order): the last event is the test target, the one before
it the validation target, the rest is training. Users with fewer than 3 events are never
evaluated; their whole sequence is training data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nostrade.sequences import DISLIKE, Sequences

MIN_EVAL_LENGTH = 3


@dataclass(frozen=True)
class EvalCases:
    """One ranking case per row: a chronological history and the item to find."""
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
    test_liked: EvalCases  # next liked: last Like/Love event, history = every other event
    test_disliked: EvalCases  # users whose last event is a Dislike: history = events before it


def _cases(seqs: Sequences, users: np.ndarray, target_pos: np.ndarray, keep: np.ndarray) -> EvalCases:
    """Cases for ``users`` whose target is at ``target_pos``; ``keep`` marks the flat events of the history."""
    flat_target = seqs.offsets[users] + target_pos
    history = seqs.select(keep).take(users)
    return EvalCases(users, history, seqs.iid[flat_target], seqs.feedback[flat_target])


def leave_one_out(seqs: Sequences) -> LeaveOneOut:
    lengths = seqs.lengths
    pos = seqs.position_of_event()
    length_of_event = np.repeat(lengths, lengths)
    evaluated = lengths >= MIN_EVAL_LENGTH
    evaluated_event = np.repeat(evaluated, lengths)
    users = np.flatnonzero(evaluated)

    train = seqs.select(~evaluated_event | (pos < length_of_event - 2))
    valid = _cases(seqs, users, lengths[users] - 2, pos < length_of_event - 2)
    test = _cases(seqs, users, lengths[users] - 1, pos < length_of_event - 1)

    # Next liked: the last non-Dislike event; later events (Dislikes) stay in the history.
    liked_event = evaluated_event & (seqs.feedback != DISLIKE)
    last_liked = np.full(seqs.n_users, -1)
    np.maximum.at(last_liked, seqs.row_of_event()[liked_event], pos[liked_event])
    liked_users = np.flatnonzero(last_liked >= 0)
    test_liked = _cases(seqs, liked_users, last_liked[liked_users], pos != np.repeat(last_liked, lengths))

    last_flat = seqs.offsets[1:] - 1
    disliked_users = users[seqs.feedback[last_flat[users]] == DISLIKE]
    test_disliked = _cases(seqs, disliked_users, lengths[disliked_users] - 1, pos < length_of_event - 1)
    return LeaveOneOut(train, valid, test, test_liked, test_disliked)
