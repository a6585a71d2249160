import numpy as np
import pytest

from nostrade.sequences import DISLIKE, Sequences
from nostrade.split import EvalCases, LeaveOneOut, leave_one_out, split_of
from nostrade.dataset import load_dataset


def split():
    # user 0 ends on a Dislike; user 1 is too short to evaluate; user 2 ends on Love.
    return leave_one_out(Sequences.from_lists([[1, 2, 3, 4], [5, 6], [7, 8, 9]], [[3, 2, 1, 1], [2, 2], [2, 1, 3]]))


def test_train_part_drops_last_two_of_evaluated_users_and_keeps_short_users_whole():
    s = split()
    assert s.train.lengths.tolist() == [2, 2, 1]
    assert s.train.iid.tolist() == [1, 2, 5, 6, 7]


def test_validation_and_test_targets():
    s = split()
    assert s.valid.users.tolist() == [0, 2] and s.valid.target.tolist() == [3, 8]
    assert s.valid.history.iid.tolist() == [1, 2, 7]
    assert s.test.target.tolist() == [4, 9] and s.test.target_feedback.tolist() == [1, 3]
    assert s.test.history.iid.tolist() == [1, 2, 3, 7, 8]


def test_next_liked_and_disliked_are_the_test_events_grouped_by_their_feedback():
    s = split()
    assert s.test_liked.users.tolist() == [2] and s.test_liked.target.tolist() == [9]
    assert s.test_liked.history.iid.tolist() == [7, 8]
    assert s.test_disliked.users.tolist() == [0] and s.test_disliked.target.tolist() == [4]
    assert s.test_disliked.history.iid.tolist() == [1, 2, 3]


# ---- order that is not time: seeded random held-out events ----------------------------------------------------

def random_split(seed=0):
    seqs = Sequences.from_lists([list(range(1, 41)), [41, 42], list(range(50, 60)), [61, 62, 63]],
                                [[2] * 30 + [1] * 10, [2, 2], [3, 1] * 5, [1, 2, 2]])
    return seqs, leave_one_out(seqs, order_is_time=False, seed=seed)


def test_random_split_holds_out_random_events_and_loses_none():
    seqs, s = random_split()
    assert s.valid.users.tolist() == s.test.users.tolist() == [0, 2, 3]
    assert s.test.target.tolist()[:2] != [40, 59] or s.valid.target.tolist()[:2] != [39, 58]  # not the last events
    disliked = dict(zip(s.test_disliked.users.tolist(), s.test_disliked.target.tolist()))
    for u, row in enumerate(s.test.users):
        events = set(seqs.take([row]).iid)
        train = set(s.train.take([row]).iid)
        held = {s.valid.target[u], s.test.target[u]} | ({disliked[row]} if row in disliked else set())
        assert train | held == events and len(train) == len(events) - len(held)
        assert set(s.test.history.take([u]).iid) == (events - held) | {s.valid.target[u]}
    assert sorted(s.train.take([1]).iid) == [41, 42]  # too short: all training
    assert s.order_is_time is False


def test_random_split_histories_carry_no_file_order_and_the_seed_repeats():
    seqs, s = random_split()
    assert s.test.history.take([0]).iid.tolist() != sorted(s.test.history.take([0]).iid.tolist())
    _, again = random_split()
    _, other = random_split(seed=1)
    assert again.test.target.tolist() == s.test.target.tolist()
    assert other.test.target.tolist() != s.test.target.tolist()


def test_random_split_holds_out_one_random_dislike_per_user_with_one_and_enough_other_events():
    seqs, s = random_split()
    # user 3 has a Dislike but only 3 events: holding it out would leave too few to evaluate
    assert s.test_disliked.users.tolist() == [0, 2] and (s.test_disliked.target_feedback == DISLIKE).all()
    assert s.test_disliked.target.tolist() != [31, 51]  # not the first Dislike of the file
    for case, row in enumerate(s.test_disliked.users):  # the history is the user's training part
        assert s.test_disliked.history.take([case]).iid.tolist() == s.train.take([row]).iid.tolist()
    assert (s.test_liked.target_feedback != DISLIKE).all()
    assert set(s.test_liked.users) == set(s.test.users[s.test.target_feedback != DISLIKE])


def _targets_in_training(s) -> list[str]:
    """Names of the case sets with a target among its user's training events (or in its own history)."""
    leaks = []
    for name in ("valid", "test", "test_liked", "test_disliked"):
        cases = getattr(s, name)
        for case, row in enumerate(cases.users):
            if cases.target[case] in s.train.take([row]).iid or cases.target[case] in cases.history.take([case]).iid:
                leaks.append(name)
    return leaks


@pytest.mark.parametrize("order_is_time", [True, False])
def test_no_evaluated_target_is_among_its_users_training_events(order_is_time, processed_sample):
    data = load_dataset(processed_sample)
    assert all(len(set(seqs)) == len(seqs) for seqs in np.split(data.sequences.iid, data.sequences.offsets[1:-1]))
    s = leave_one_out(data.sequences, order_is_time, user_ids=data.user_ids)
    assert len(s.test_liked) and len(s.test_disliked)
    assert _targets_in_training(s) == []
    # and the check can fail: the old rule's liked target (the last Like anywhere) was often a training event
    last_trained = s.train.offsets[1:][s.test.users] - 1
    old_liked = EvalCases(s.test.users, s.test.history, s.train.iid[last_trained], s.train.feedback[last_trained])
    assert "test_liked" in _targets_in_training(LeaveOneOut(s.train, s.valid, s.test, old_liked, s.test_disliked))


def test_random_split_is_stable_when_other_people_are_added(processed_sample):
    data = load_dataset(processed_sample)
    before = leave_one_out(data.sequences, False, seed=0, user_ids=data.user_ids)
    newcomer = Sequences.from_lists([[1, 2, 3, 4, 5]], [[1, 2, 3, 2, 1]])
    rows = np.arange(data.sequences.n_users)
    joined = Sequences(np.concatenate([newcomer.offsets, data.sequences.offsets[1:] + 5]),
                       np.concatenate([newcomer.iid, data.sequences.iid]),
                       np.concatenate([newcomer.feedback, data.sequences.feedback]),
                       np.concatenate([newcomer.time_bin, data.sequences.time_bin]))
    after = leave_one_out(joined, False, seed=0, user_ids=np.concatenate([[10 ** 9], data.user_ids]))
    for name in ("valid", "test", "test_disliked"):
        old, new = getattr(before, name), getattr(after, name)
        shifted = new.users[new.users > 0] - 1
        assert shifted.tolist() == old.users.tolist()
        assert new.target[new.users > 0].tolist() == old.target.tolist()
    assert after.train.take(rows + 1).iid.tolist() == before.train.iid.tolist()


def test_split_of_uses_the_data_sets_user_ids(processed_sample):
    data = load_dataset(processed_sample)
    data = data.__class__(data.items, data.sequences, data.user_ids, {**data.meta, "order_is_time": False})
    by_ids = split_of(data).test.target
    assert by_ids.tolist() == leave_one_out(data.sequences, False, user_ids=data.user_ids).test.target.tolist()
