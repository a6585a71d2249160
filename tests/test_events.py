import multiprocessing
import os
import signal
import sqlite3
import threading

import pytest

from nostrade.events import (CLEARED, SAVED, SCHEMA_VERSION, UNSAVED, EventLog, IdempotencyConflict, NotAnEventLog,
                             new_event_id)
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
    assert {"event_id", "user_id", "session_id", "item_id", "feedback_type", "timestamp"} <= set(columns)
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
    assert frame["item_id"].tolist() == [20, 21, 20]
    assert frame["session_id"].iloc[0] == "s1" and frame["session_id"].iloc[1:].isna().all()
    assert frame["event_id"].str.len().min() == 32
    assert log.events(user_id=8)["feedback_type"].tolist() == [LIKE]
    assert log.count() == 3


def test_retried_event_is_stored_once(log):
    event_id = new_event_id()
    assert log.append(1, 5, LIKE, event_id=event_id) is True
    assert log.append(1, 5, LIKE, event_id=event_id) is False
    with pytest.raises(IdempotencyConflict, match=rf"event_id '{event_id}' is already stored for a different event "
                                                  r"\(user_id 1, item_id 5, feedback_type 2"):
        log.append(1, 5, LOVE, event_id=event_id)  # the key reused for another payload
    with pytest.raises(IdempotencyConflict):
        log.append(1, 5, LIKE, event_id=event_id, timestamp=5.0)  # another explicit timestamp
    assert log.events()["feedback_type"].tolist() == [LIKE]  # the first one stays


def test_saved_for_later(log):
    log.append(1, 10, SAVED, timestamp=1.0)
    log.append(1, 11, SAVED, timestamp=2.0)
    log.append(1, 10, UNSAVED, timestamp=3.0)
    log.append(1, 11, LIKE, timestamp=4.0)
    assert log.saved(1) == [11]


def test_empty_log_reads_empty(log):
    assert log.events().empty and log.saved(1) == []


@pytest.mark.parametrize("kwargs, field", [
    (dict(user_id="x", item_id=1, feedback_type=1), "user_id"),
    (dict(user_id=1, item_id=1.5, feedback_type=1), "item_id"),
    (dict(user_id=1, item_id=True, feedback_type=1), "item_id"),
    (dict(user_id=1, item_id=1, feedback_type=7), "feedback_type"),
    (dict(user_id=2**64, item_id=1, feedback_type=1), "user_id"),
    (dict(user_id=1, item_id=1, feedback_type=1, event_id=""), "event_id"),
    (dict(user_id=1, item_id=1, feedback_type=1, event_id="x" * 129), "event_id"),
    (dict(user_id=1, item_id=1, feedback_type=1, timestamp=float("nan")), "timestamp"),
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


# ------------------------------------------------------------------------------------------ files that are not logs

def foreign_database(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute("INSERT INTO notes (text) VALUES ('keep me')")
    conn.commit()
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize("read_only", [True, False])
def test_another_applications_database_is_refused_and_left_as_it_was(tmp_path, read_only):
    path = tmp_path / "app.db"
    before = foreign_database(path)
    with pytest.raises(NotAnEventLog, match=rf"^{path}: "):
        EventLog(path, read_only=read_only)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # no WAL either


def test_an_events_table_of_another_shape_is_refused(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE events (id INTEGER, what TEXT)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    for read_only in (True, False):
        with pytest.raises(NotAnEventLog, match=r"its events table has columns \['id', 'what'\]"):
            EventLog(path, read_only=read_only)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "events.db"
    path.write_bytes(b"not a database at all, just some text " * 100)
    for read_only in (True, False):
        with pytest.raises(NotAnEventLog, match=rf"^{path}: not an SQLite event log \(file is not a database\)"):
            EventLog(path, read_only=read_only)


def test_read_only_never_creates_and_reads_without_writing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such event log"):
        EventLog(tmp_path / "missing.db", read_only=True)
    assert list(tmp_path.iterdir()) == []
    writer = EventLog(tmp_path / "events.db")
    writer.append(1, 5, LIKE)
    reader = EventLog(tmp_path / "events.db", read_only=True)
    assert reader.events()["item_id"].tolist() == [5]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.append(1, 6, LIKE)


def damage_index(path) -> None:
    """Overwrite the events_by_user index's root page with garbage (a bad sector under the index)."""
    log = EventLog(path)
    for n in range(50):
        log.append(n, n, LIKE)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events_by_user'").fetchone()[0]
    conn.close()
    log.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)


def test_quick_check_finds_a_damaged_index(tmp_path):
    path = tmp_path / "events.db"
    EventLog(path).append(1, 2, LIKE)
    assert EventLog(path).quick_check() == []
    damage_index(path)
    problems = EventLog(path).quick_check()
    assert problems and all(isinstance(p, str) for p in problems)


def remove_log(path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.unlink(f"{path}{suffix}")


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_log_deleted_or_replaced_under_a_writer_refuses_to_store(tmp_path, how):
    """Defect: after events.db (and -wal, -shm) were deleted under the service, 30 appends said stored and were lost
    (written to the deleted inode)."""
    path = tmp_path / "events.db"
    log = EventLog(path)
    assert log.append(1, 100, LIKE)
    if how == "deleted":
        remove_log(path)
    else:
        other = EventLog(tmp_path / "other.db")
        other.close()
        remove_log(path)
        os.replace(tmp_path / "other.db", path)
    with pytest.raises(sqlite3.DatabaseError, match=rf"^{path}: {how} while this process had it open"):
        log.append(1, 200, LOVE)
    with pytest.raises(sqlite3.DatabaseError, match=how):
        log.check_identity()
    threads = []
    thread = threading.Thread(target=lambda: threads.append(pytest.raises(sqlite3.DatabaseError, log.append, 1, 300,
                                                                           LIKE)))
    thread.start()
    thread.join()  # a new thread's new connection is refused too
    assert threads and (not path.exists() or EventLog(path).count() == 0)


def test_one_timestamp_range_for_every_entry_point(log):
    """Defect: the API took timestamps up to year 3000 while prep refuses anything after 2099."""
    from nostrade.sources import MAX_TIMESTAMP
    for bad in (MAX_TIMESTAMP, 4.2e9, -1.0):
        with pytest.raises(ValueError, match=r"^event timestamp: .* is outside 1970\.\.2099"):
            log.append(1, 100, LIKE, timestamp=bad)
    assert log.append(1, 100, LIKE, timestamp=MAX_TIMESTAMP - 1) and log.count() == 1


V1_SCHEMA = ["""CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE
    CHECK (length(event_id) BETWEEN 1 AND 128), user_id INTEGER NOT NULL, session_id TEXT, anime_id INTEGER NOT NULL,
    feedback_type INTEGER NOT NULL CHECK (feedback_type BETWEEN 0 AND 5), timestamp REAL NOT NULL)""",
             "CREATE INDEX events_by_user ON events (user_id, seq)",
             "CREATE TABLE schema_versions (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL, "
             "description TEXT NOT NULL)",
             "INSERT INTO schema_versions VALUES (1, 0, 'v1')",
             "INSERT INTO events (event_id, user_id, session_id, anime_id, feedback_type, timestamp) "
             "VALUES ('a', 7, 's', 20, 3, 100.0), ('b', 7, NULL, 21, 4, 101.0)",
             "PRAGMA user_version = 1"]
V1_EVENTS = [["a", 7, 20, LOVE, 100.0], ["b", 7, 21, SAVED, 101.0]]


def version_1_log(path):
    """A log as version 1 of the schema wrote it: the title column is anime_id."""
    conn = sqlite3.connect(path)
    for statement in V1_SCHEMA:
        conn.execute(statement)
    conn.commit()
    conn.close()
    return path


def test_a_version_1_log_is_read_as_it_is_when_read_only(tmp_path):
    path = version_1_log(tmp_path / "events.db")
    before = path.read_bytes()
    frame = EventLog(path, read_only=True).events()
    assert frame[["event_id", "user_id", "item_id", "feedback_type", "timestamp"]].values.tolist() == V1_EVENTS
    assert path.read_bytes() == before


def test_a_version_1_log_is_migrated_in_place_keeping_every_event(tmp_path):
    path = version_1_log(tmp_path / "events.db")
    log = EventLog(path)
    assert log.schema_version() == SCHEMA_VERSION == 2
    frame = log.events()
    assert frame[["event_id", "user_id", "item_id", "feedback_type", "timestamp"]].values.tolist() == V1_EVENTS
    assert log.saved(7) == [21] and log.append(7, 22, LIKE, event_id="c")
    assert log.append(7, 20, LOVE, event_id="a", session_id="s") is False  # idempotency survives the migration
    conn = sqlite3.connect(path)
    assert [v for v, in conn.execute("SELECT version FROM schema_versions ORDER BY version")] == [1, 2]
    assert [row[1] for row in conn.execute("PRAGMA table_info(events)")][4] == "item_id"
    assert EventLog(path).count() == 3  # opening again changes nothing


def test_a_failed_migration_leaves_the_version_1_log_as_it_was(tmp_path, monkeypatch):
    path = version_1_log(tmp_path / "events.db")

    def crash(self, conn, version):
        conn.execute("ALTER TABLE events RENAME COLUMN anime_id TO item_id")
        raise KeyboardInterrupt

    monkeypatch.setattr(EventLog, "_upgrade", crash)
    with pytest.raises(KeyboardInterrupt):
        EventLog(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT event_id, user_id, anime_id, feedback_type, timestamp FROM events").fetchall() == \
        [tuple(e) for e in V1_EVENTS]
