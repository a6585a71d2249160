"""One definition of a person's history (nostrade.history), used by the app, the API and fine-tuning."""
import numpy as np
import pandas as pd
import pytest

from nostrade import finetune as ft
from nostrade.dataset import Dataset
from nostrade.events import CLEARED, SAVED, EventLog
from nostrade.history import UserHistories, as_events, merged, training_events
from nostrade.sequences import DISLIKE, LIKE, LOVE, Sequences


@pytest.fixture
def data():
    """Training users 5 and 9 over anime 100, 200, 300, 400 (iid 1..4), no timestamps."""
    items = pd.DataFrame({"iid": [1, 2, 3, 4], "item_id": [100, 200, 300, 400]})
    meta = {"iid_map_sha256": "x", "has_timestamps": False, "time_bins": {"scheme": "none", "n_bins": 1}}
    return Dataset(items, Sequences.from_lists([[1, 2, 3], [4, 1]], [[2, 3, 2], [1, 2]]), np.array([5, 9]), meta)


@pytest.fixture
def log(tmp_path):
    return EventLog(tmp_path / "events.db")


def test_latest_rating_wins_clear_removes_and_saves_are_not_ratings(data, log):
    log.append(3, 10, LIKE, timestamp=1.0)
    log.append(3, 11, DISLIKE, timestamp=2.0)
    log.append(3, 12, LOVE, timestamp=3.0)
    log.append(3, 10, LOVE, timestamp=4.0)  # changed its mind: Love, now the most recent
    log.append(3, 11, CLEARED, timestamp=5.0)
    log.append(3, 12, SAVED, timestamp=6.0)  # saving does not touch the rating
    log.append(4, 99, LIKE, timestamp=0.5)  # another user
    history = UserHistories(data, log).frame(3)
    assert history["item_id"].tolist() == [12, 10] and history["feedback"].tolist() == [LOVE, LOVE]


def test_ties_in_timestamp_follow_storage_order(data, log):
    log.append(3, 10, LIKE, timestamp=1.0)
    log.append(3, 10, DISLIKE, timestamp=1.0)
    assert UserHistories(data, log).frame(3)["feedback"].tolist() == [DISLIKE]


def test_training_events_come_first_and_a_cleared_training_title_is_gone(data, log):
    log.append(9, 300, LOVE, timestamp=1.0)
    log.append(9, 400, CLEARED, timestamp=2.0)  # 400 is in user 9's training data
    histories = UserHistories(data, log)
    events, n_training, n_logged = histories.of(9)
    assert events == [(100, LIKE, None), (300, LOVE, None)] and (n_training, n_logged) == (1, 1)
    assert histories.of(77) == ([], 0, 0)  # a stranger


def test_app_api_and_fine_tuning_read_the_same_history(data, log):
    """The case that used to differ: a rating cleared for a title of the user's training history."""
    log.append(5, 200, CLEARED, timestamp=1.0)
    log.append(5, 400, DISLIKE, timestamp=2.0)
    served = [a for a, _, _ in UserHistories(data, log).of(5)[0]]
    tuned = ft.merge_log(data, log.events()).dataset
    row = list(tuned.user_ids).index(5)
    iids = tuned.sequences.iid[tuned.sequences.offsets[row]:tuned.sequences.offsets[row + 1]]
    assert served == [100, 300, 400] == (iids * 100).tolist()


def test_with_timestamps_everywhere_one_sort_by_time(data, log):
    seqs = Sequences.from_lists([[1, 2, 3], [4, 1]], [[2, 3, 2], [1, 2]])
    timed = Dataset(data.items, Sequences(seqs.offsets, seqs.iid, seqs.feedback, seqs.time_bin,
                                          np.array([10.0, 30.0, 50.0, 10.0, 20.0])), data.user_ids, data.meta)
    log.append(5, 400, LIKE, timestamp=40.0)
    frame, counts = merged(training_events(timed), log.events())
    assert frame.loc[frame["user_id"] == 5, "item_id"].tolist() == [100, 200, 400, 300]
    assert as_events(frame[frame["user_id"] == 5])[2] == (400, LIKE, 40.0) and counts["replaced_events"] == 0


def test_a_later_correction_wins_whatever_its_timestamp(data, log):
    """Defect: a Love stamped 4.0e9 (2096) could never be corrected: a later Dislike stamped now lost to it."""
    log.append(3, 10, LOVE, timestamp=4.0e9)
    log.append(3, 10, DISLIKE)  # the correction, stored later, stamped now
    assert UserHistories(data, log).frame(3)["feedback"].tolist() == [DISLIKE]
    seqs = Sequences.from_lists([[1, 2, 3], [4, 1]], [[2, 3, 2], [1, 2]])
    timed = Dataset(data.items, Sequences(seqs.offsets, seqs.iid, seqs.feedback, seqs.time_bin,
                                          np.array([10.0, 30.0, 50.0, 10.0, 20.0])), data.user_ids, data.meta)
    log.append(5, 300, DISLIKE, timestamp=40.0)  # corrects a training rating stamped later (50.0)
    frame, counts = merged(training_events(timed), log.events())
    user = frame[frame["user_id"] == 5]
    assert user["item_id"].tolist() == [100, 200, 300] and user["feedback"].tolist() == [2, 3, DISLIKE]
    assert counts["replaced_events"] == 2
