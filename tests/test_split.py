from nostrade.sequences import Sequences
from nostrade.split import leave_one_out


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


def test_next_liked_skips_trailing_dislikes_and_keeps_them_in_history():
    s = split()
    assert s.test_liked.users.tolist() == [0, 2]
    assert s.test_liked.target.tolist() == [2, 9]
    assert s.test_liked.history.iid.tolist() == [1, 3, 4, 7, 8]
    assert s.test_liked.history.lengths.tolist() == [3, 2]


def test_next_disliked_only_for_users_ending_on_a_dislike():
    s = split()
    assert s.test_disliked.users.tolist() == [0]
    assert s.test_disliked.target.tolist() == [4]
    assert s.test_disliked.history.iid.tolist() == [1, 2, 3]


# ---- order that is not time: seeded random held-out events ----------------------------------------------------

def random_split(seed=0):
    seqs = Sequences.from_lists([list(range(1, 41)), [41, 42], list(range(50, 60))],
                                [[2] * 30 + [1] * 10, [2, 2], [3, 1] * 5])
    return seqs, leave_one_out(seqs, order_is_time=False, seed=seed)


def test_random_split_holds_out_random_events_and_loses_none():
    seqs, s = random_split()
    assert s.valid.users.tolist() == s.test.users.tolist() == [0, 2]
    assert s.test.target.tolist() != [40, 59] or s.valid.target.tolist() != [39, 58]  # not the last events
    for u, row in enumerate(s.test.users):
        events = set(seqs.take([row]).iid)
        train = set(s.train.take([row]).iid)
        assert train | {s.valid.target[u], s.test.target[u]} == events and len(train) == len(events) - 2
        assert set(s.test.history.take([u]).iid) == events - {s.test.target[u]}
    assert sorted(s.train.take([1]).iid) == [41, 42]  # too short: all training
    assert s.order_is_time is False


def test_random_split_histories_carry_no_file_order_and_the_seed_repeats():
    seqs, s = random_split()
    assert s.test.history.take([0]).iid.tolist() != sorted(s.test.history.take([0]).iid.tolist())
    _, again = random_split()
    _, other = random_split(seed=1)
    assert again.test.target.tolist() == s.test.target.tolist()
    assert other.test.target.tolist() != s.test.target.tolist()


def test_random_split_next_liked_and_disliked_are_random_events_of_that_kind():
    seqs, s = random_split()
    assert s.test_disliked.users.tolist() == [0, 2] and (s.test_disliked.target_feedback == 1).all()
    assert (s.test_liked.target_feedback != 1).all()
    for u in range(2):  # every other event is the history
        assert len(s.test_disliked.history.take([u]).iid) == seqs.lengths[s.test_disliked.users[u]] - 1
    assert s.test_disliked.target.tolist() != [40, 60]
