import multiprocessing
import os
import signal
import sqlite3
import threading

import pytest

from nostrade.events import CLEARED, SAVED, SCHEMA_VERSION, UNSAVED, EventLog, new_event_id
from nostrade.sequences import DISLIKE, LIKE, LOVE


@pytest.fixture
def log(tmp_path):
    return EventLog(tmp_path / "sub" / "events.db")


def test_schema_created_on_first_use_with_version_and_wal(tmp_path):
    path = tmp_path / "new" / "events.db"
    assert not path.exists()
    log = EventLog(path)
    assert path.exists() and log.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_versions").fetchall() == [(SCHEMA_VERSION,)]
    columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
    assert {"event_id", "user_id", "session_id", "anime_id", "feedback_type", "timestamp"} <= set(columns)
    EventLog(path)  # opening again keeps the schema
    assert conn.execute("SELECT count(*) FROM schema_versions").fetchone()[0] == 1


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "events.db"
    EventLog(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        EventLog(path)


def test_append_and_read_back(log):
    assert log.append(7, 20, LOVE, session_id="s1", timestamp=100.0)
    assert log.append(7, 21, DISLIKE, timestamp=101.0)
    assert log.append(8, 20, LIKE, timestamp=99.0)
    frame = log.events()
    assert frame["anime_id"].tolist() == [20, 21, 20]
    assert frame["session_id"].iloc[0] == "s1" and frame["session_id"].iloc[1:].isna().all()
    assert frame["event_id"].str.len().min() == 32
    assert log.events(user_id=8)["feedback_type"].tolist() == [LIKE]
    assert log.count() == 3


def test_retried_event_is_stored_once(log):
    event_id = new_event_id()
    assert log.append(1, 5, LIKE, event_id=event_id) is True
    assert log.append(1, 5, LIKE, event_id=event_id) is False
    assert log.append(1, 5, LOVE, event_id=event_id) is False  # the first one stays
    assert log.events()["feedback_type"].tolist() == [LIKE]


def test_saved_for_later(log):
    log.append(1, 10, SAVED, timestamp=1.0)
    log.append(1, 11, SAVED, timestamp=2.0)
    log.append(1, 10, UNSAVED, timestamp=3.0)
    log.append(1, 11, LIKE, timestamp=4.0)
    assert log.saved(1) == [11]


def test_empty_log_reads_empty(log):
    assert log.events().empty and log.saved(1) == []


@pytest.mark.parametrize("kwargs, field", [
    (dict(user_id="x", anime_id=1, feedback_type=1), "user_id"),
    (dict(user_id=1, anime_id=1.5, feedback_type=1), "anime_id"),
    (dict(user_id=1, anime_id=True, feedback_type=1), "anime_id"),
    (dict(user_id=1, anime_id=1, feedback_type=7), "feedback_type"),
    (dict(user_id=2**64, anime_id=1, feedback_type=1), "user_id"),
    (dict(user_id=1, anime_id=1, feedback_type=1, event_id=""), "event_id"),
    (dict(user_id=1, anime_id=1, feedback_type=1, event_id="x" * 129), "event_id"),
    (dict(user_id=1, anime_id=1, feedback_type=1, timestamp=float("nan")), "timestamp"),
])
def test_bad_events_are_refused_and_nothing_is_written(log, kwargs, field):
    with pytest.raises(ValueError, match=field):
        log.append(**kwargs)
    assert log.count() == 0


def test_many_threads_appending_lose_nothing_and_duplicate_nothing(tmp_path):
    log = EventLog(tmp_path / "events.db")
    n_threads, per_thread = 16, 25
    errors = []
    barrier = threading.Barrier(n_threads)

    def worker(t):
        try:
            barrier.wait()
            for i in range(per_thread):
                # every event is sent twice (a client retry): it must be stored once
                event_id = f"t{t}-e{i}"
                log.append(t, i, LIKE, event_id=event_id)
                log.append(t, i, LIKE, event_id=event_id)
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    frame = log.events()
    assert len(frame) == n_threads * per_thread
    assert frame["event_id"].is_unique
    assert sorted(frame.groupby("user_id").size().unique()) == [per_thread]


def _append_forever(path, ready, acknowledged):
    log = EventLog(path)
    ready.set()
    i = 0
    while True:
        log.append(1, i, LIKE, event_id=f"e{i}")
        acknowledged.value = i + 1  # only after append returned: the event is acknowledged
        i += 1


def test_acknowledged_events_survive_sigkill(tmp_path):
    path = tmp_path / "events.db"
    context = multiprocessing.get_context("spawn")
    ready, acknowledged = context.Event(), context.Value("q", 0)
    process = context.Process(target=_append_forever, args=(path, ready, acknowledged))
    process.start()
    assert ready.wait(60)
    while acknowledged.value < 20:
        pass
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    stored = EventLog(path).events()
    assert len(stored) >= acknowledged.value >= 20
    assert stored["event_id"].tolist() == [f"e{i}" for i in range(len(stored))]
