import numpy as np
import pytest

from nostrade.sequences import LIKE, Sequences, sum_by_owner


def make():
    return Sequences.from_lists([[1, 2, 3, 4], [5, 6], [], [7, 8, 9]], [[3, 2, 1, 1], [2, 2], [], [2, 1, 3]])


def test_from_lists_defaults_feedback_like_and_bin_one():
    s = Sequences.from_lists([[4, 5]])
    assert s.feedback.tolist() == [LIKE, LIKE] and s.time_bin.tolist() == [1, 1]


def test_rows_positions_and_lengths():
    s = make()
    assert s.lengths.tolist() == [4, 2, 0, 3]
    assert s.row_of_event().tolist() == [0, 0, 0, 0, 1, 1, 3, 3, 3]
    assert s.position_of_event().tolist() == [0, 1, 2, 3, 0, 1, 0, 1, 2]


def test_take_reorders_and_repeats_rows():
    t = make().take(np.array([3, 0, 3]))
    assert t.lengths.tolist() == [3, 4, 3]
    assert t.iid.tolist() == [7, 8, 9, 1, 2, 3, 4, 7, 8, 9]
    assert t.feedback.tolist() == [2, 1, 3, 3, 2, 1, 1, 2, 1, 3]


def test_select_keeps_every_row():
    s = make()
    kept = s.select(s.iid % 2 == 0)
    assert kept.n_users == 4 and kept.lengths.tolist() == [2, 1, 0, 1]
    assert kept.iid.tolist() == [2, 4, 6, 8]
    assert kept.offsets.dtype == np.int64
    assert s.select(np.zeros(len(s.iid), bool)).offsets.tolist() == [0, 0, 0, 0, 0]
    assert s.select(np.ones(len(s.iid), bool)).offsets.tolist() == s.offsets.tolist()


def test_padded_keeps_most_recent_left_padded():
    iid, fb, tb = make().padded(3)
    assert iid.tolist() == [[2, 3, 4], [0, 5, 6], [0, 0, 0], [7, 8, 9]]
    assert fb.tolist() == [[2, 1, 1], [0, 2, 2], [0, 0, 0], [2, 1, 3]]
    assert tb.tolist() == [[1, 1, 1], [0, 1, 1], [0, 0, 0], [1, 1, 1]]


def test_sum_by_owner_sums_each_owners_run_and_leaves_the_others_zero():
    values = np.arange(12, dtype=np.float32).reshape(6, 2)
    owner = np.array([0, 0, 2, 2, 2, 4])
    expected = np.zeros((5, 2), np.float32)
    np.add.at(expected, owner, values)
    np.testing.assert_array_equal(sum_by_owner(values, owner, 5), expected)
    assert not sum_by_owner(values[:0], owner[:0], 3).any()
    np.testing.assert_array_equal(sum_by_owner(values, np.zeros(6, np.int64), 1), values.sum(axis=0, keepdims=True))
    assert sum_by_owner(values[:0], owner[:0], 1).shape == (1, 2)
    with pytest.raises(ValueError, match="ascending"):
        sum_by_owner(values, owner[::-1], 5)
