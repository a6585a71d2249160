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
