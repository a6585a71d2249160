"""Append-only SQLite log of feedback events: the demo's clicks and the HTTP service's POST /feedback.

Durability: the database runs in WAL mode with ``synchronous=FULL``, and every event is its own
``BEGIN IMMEDIATE … COMMIT``: once ``append`` returns, the event is in the fsynced WAL and survives a
SIGKILL of the process and a power loss (NORMAL would survive a SIGKILL too, but can lose the last
commits on power loss; a click costs one fsync either way, a few ms). Writers queue on the lock through
``busy_timeout`` rather than fail, and readers never block writers (WAL).

Idempotency: every event carries an ``event_id`` (client-supplied, or a generated uuid4); a retried
event with an id already stored is ignored (``INSERT … ON CONFLICT(event_id) DO NOTHING``), so it is
stored once and ``append`` returns False. An id already stored for a *different* event (another user,
title, feedback or session, or another timestamp when one is given) raises IdempotencyConflict.

Ownership: the schema is only ever created in a new or empty database; a file that holds anything else
(another application's tables, or not SQLite at all) raises NotAnEventLog and is left as it was.
``EventLog(path, read_only=True)`` (fine-tuning) opens an existing log read-only and never creates it.
Schema version 1 named the title column ``anime_id``: a writer renames it ``item_id`` in place when it opens
such a log (one transaction), a read-only reader reads it under the new name and changes nothing.
``quick_check()`` runs SQLite's structural check (the service does at start-up: a damaged page otherwise
shows only when a write hits it).

Identity: a writer remembers the file it opened (device, inode). Each ``append`` checks, before and after
its commit, that the file at the path is still that one, and raises EventLogGone if it was deleted or
replaced (SQLite would otherwise go on writing to the unlinked file and lose every event at the next start);
a new thread's connection is refused the same way, so it never creates an empty file where the log was.

Feedback codes (``feedback_type``): 1 Dislike, 2 Like, 3 Love (as in the processed data), 0 = the
person cleared their rating of the title, 4 = saved for later, 5 = removed from "saved for later".
The current state of a (user, title) pair is its last stored event (by seq, whatever its timestamp: a
correction always wins, also over an event stamped in the future): a rating event (0–3) sets or clears the
rating, a save event (4, 5) the watch-list flag; the two are independent. Timestamps lie in prep's range,
1970..2099 (nostrade.sources.MAX_TIMESTAMP), as everywhere else.

Thread-safe: each thread (and each process after a fork) uses its own connection.
"""
from __future__ import annotations

import operator
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pandas as pd

from nostrade.sequences import DISLIKE, LIKE, LOVE
from nostrade.sources import MAX_TIMESTAMP

CLEARED, SAVED, UNSAVED = 0, 4, 5
RATING_TYPES = (CLEARED, DISLIKE, LIKE, LOVE)
FEEDBACK_TYPES = (*RATING_TYPES, SAVED, UNSAVED)
SCHEMA_VERSION = 2
MAX_EVENT_ID_LENGTH = 128
COLUMNS = ["seq", "event_id", "user_id", "session_id", "item_id", "feedback_type", "timestamp"]
V1_COLUMNS = [c if c != "item_id" else "anime_id" for c in COLUMNS]  # version 1 named the title column anime_id
SCHEMA_DESCRIPTION = ("events(event_id UNIQUE, user_id, session_id, item_id, feedback_type 0-5, timestamp); "
                      "version 1 named item_id anime_id")

_SCHEMA = (f"""
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE CHECK (length(event_id) BETWEEN 1 AND {MAX_EVENT_ID_LENGTH}),
    user_id INTEGER NOT NULL,
    session_id TEXT,
    item_id INTEGER NOT NULL,
    feedback_type INTEGER NOT NULL CHECK (feedback_type BETWEEN 0 AND 5),
    timestamp REAL NOT NULL
)""",
    "CREATE INDEX events_by_user ON events (user_id, seq)",
    "CREATE TABLE schema_versions (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL, description TEXT NOT NULL)",
)


class NotAnEventLog(ValueError):
    """The file is not a nostrade event log (not SQLite, or another application's database)."""


class EventLogGone(sqlite3.DatabaseError):
    """The log's file was deleted or replaced while this process had it open: what it wrote would be lost."""


class IdempotencyConflict(ValueError):
    """An ``event_id`` that is already stored for a different event."""


def new_event_id() -> str:
    return uuid.uuid4().hex


class EventLog:
    """``EventLog(path).append(user_id, item_id, feedback_type)``; the file and schema are created on first use.

    ``read_only=True``: an existing log, opened read-only (missing file: FileNotFoundError)."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0, read_only: bool = False):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.read_only = read_only
        self._local = threading.local()
        self._identity = None  # the file this writer opened: (device, inode)
        self._select = ", ".join(COLUMNS)  # what events() reads: a read-only version 1 log renames as it reads
        if read_only:
            if not self.path.is_file():
                raise FileNotFoundError(f"{self.path}: no such event log")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._ensure_schema()
        except sqlite3.DatabaseError as err:  # "file is not a database", a damaged header...
            raise NotAnEventLog(f"{self.path}: not an SQLite event log ({err})") from None
        if not read_only:
            self._identity = _file_identity(self.path)

    # -- connections -------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            self.check_identity()  # a new connection must not create a new file where the log was
            # isolation_level=None: no implicit transactions, each write below opens its own.
            if self.read_only:
                conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                       timeout=self.busy_timeout_s, isolation_level=None)
            else:
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            if not self.read_only:
                self._check_owned(conn)
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
            local.conn, local.pid = conn, os.getpid()
        return local.conn

    def _check_owned(self, conn: sqlite3.Connection) -> None:
        """Refuse, before changing anything, a database that holds tables but no event log schema."""
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0 and conn.execute(
                "SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise NotAnEventLog(f"{self.path}: an SQLite database of another application (tables but no event log "
                                "schema); left as it was")

    def check_identity(self) -> None:
        """Raise EventLogGone when the file at ``path`` is no longer the one this writer opened (deleted, or
        replaced by another): SQLite would go on writing to the open, unlinked file, lost at the next start."""
        if self._identity is not None and (now := _file_identity(self.path)) != self._identity:
            raise EventLogGone(f"{self.path}: {'deleted' if now is None else 'replaced'} while this process had it "
                               "open; restart it to use the file now there")

    def close(self) -> None:
        """Close this thread's connection (others close when their thread's objects are collected)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        self._local.__dict__.clear()

    def _ensure_schema(self) -> None:
        """Create the schema in a new file, or bring a version 1 log (column ``anime_id``) to version 2 in place,
        in one transaction; a read-only log of version 1 is read as it is (its ``anime_id`` read as ``item_id``)."""
        conn = self._connection()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            self._check_columns(conn, COLUMNS)
            return
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: event log schema version {version} is newer than this code "
                               f"understands ({SCHEMA_VERSION}); upgrade nostrade")
        if self.read_only:
            if version != 1:
                raise NotAnEventLog(f"{self.path}: not a nostrade event log (no event log schema)")
            self._check_columns(conn, V1_COLUMNS)
            self._select = ", ".join(f"{old} AS {new}" if old != new else new for old, new in zip(V1_COLUMNS, COLUMNS))
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._upgrade(conn, conn.execute("PRAGMA user_version").fetchone()[0])  # re-read under the write lock
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _upgrade(self, conn: sqlite3.Connection, version: int) -> None:
        if version == 0:
            self._check_owned(conn)
            for statement in _SCHEMA:
                conn.execute(statement)
        elif version == 1:
            self._check_columns(conn, V1_COLUMNS)
            conn.execute("ALTER TABLE events RENAME COLUMN anime_id TO item_id")
        if version < SCHEMA_VERSION:
            conn.execute("INSERT INTO schema_versions VALUES (?, ?, ?)",
                         (SCHEMA_VERSION, time.time(), SCHEMA_DESCRIPTION))
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _check_columns(self, conn: sqlite3.Connection, expected: list[str]) -> None:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
        if columns != expected:
            raise NotAnEventLog(f"{self.path}: not a nostrade event log (its events table has columns "
                                f"{columns or 'none'}, expected {expected})")

    def quick_check(self) -> list[str]:
        """SQLite's ``PRAGMA quick_check``: [] when the file is sound, else its problems (one line each)."""
        try:
            rows = [r[0] for r in self._connection().execute("PRAGMA quick_check").fetchall()]
        except sqlite3.DatabaseError as err:
            return [str(err)]
        lines = [line.strip() for row in rows for line in str(row).splitlines()]
        return [] if lines == ["ok"] else [line for line in lines if line and not line.startswith("***")]

    # -- writing -----------------------------------------------------------------------------------
    def append(self, user_id: int, item_id: int, feedback_type: int, *, session_id: str | None = None,
               event_id: str | None = None, timestamp: float | None = None) -> bool:
        """Store one event durably; True if stored, False if an event with this ``event_id`` already was."""
        row = _validated(user_id, item_id, feedback_type, session_id, event_id, timestamp)
        conn = self._connection()
        self.check_identity()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.execute(
                "INSERT INTO events (event_id, user_id, session_id, item_id, feedback_type, timestamp) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING", row)
            stored = cursor.rowcount == 1
            if not stored:
                _check_same_event(conn, row, timestamp_given=timestamp is not None)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.check_identity()  # gone during the commit: the event went to the unlinked file
        return stored

    # -- reading -----------------------------------------------------------------------------------
    def events(self, user_id: int | None = None) -> pd.DataFrame:
        """Every stored event (of one user, if given), in storage order."""
        query = f"SELECT {self._select} FROM events"
        params: tuple = ()
        if user_id is not None:
            query, params = query + " WHERE user_id = ?", (int(user_id),)
        rows = self._connection().execute(query + " ORDER BY seq", params).fetchall()
        frame = pd.DataFrame(rows, columns=COLUMNS)
        return frame.astype({"seq": "int64", "user_id": "int64", "item_id": "int64",
                             "feedback_type": "int8", "timestamp": "float64"})

    def saved(self, user_id: int) -> list[int]:
        """item ids the user has saved for later (and not removed since), oldest first."""
        return current_saved(self.events(user_id))

    def count(self) -> int:
        return self._connection().execute("SELECT count(*) FROM events").fetchone()[0]

    def schema_version(self) -> int:
        return self._connection().execute("PRAGMA user_version").fetchone()[0]


def _file_identity(path: Path) -> tuple | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _check_same_event(conn: sqlite3.Connection, row: tuple, timestamp_given: bool) -> None:
    """A retried event_id must carry the event it was first stored with (timestamp: only when the client set it)."""
    event_id, user_id, session_id, item_id, feedback_type, timestamp = row
    stored = conn.execute("SELECT user_id, session_id, item_id, feedback_type, timestamp FROM events "
                          "WHERE event_id = ?", (event_id,)).fetchone()
    if stored[:4] != (user_id, session_id, item_id, feedback_type) or (timestamp_given and stored[4] != timestamp):
        raise IdempotencyConflict(
            f"event_id '{event_id}' is already stored for a different event (user_id {stored[0]}, item_id "
            f"{stored[2]}, feedback_type {stored[3]}, timestamp {stored[4]}); use a new event_id for a new event")


def _latest(events: pd.DataFrame, types) -> pd.DataFrame:
    """Each (user, title)'s last stored event among ``types``, in (timestamp, seq) order."""
    chosen = events[events["feedback_type"].isin(types)]
    chosen = chosen.sort_values("seq", kind="stable").drop_duplicates(["user_id", "item_id"], keep="last")
    return chosen.sort_values(["timestamp", "seq"], kind="stable")


def current_saved(events: pd.DataFrame) -> list[int]:
    latest = _latest(events, (SAVED, UNSAVED))
    return latest.loc[latest["feedback_type"] == SAVED, "item_id"].astype(int).tolist()


def _validated(user_id, item_id, feedback_type, session_id, event_id, timestamp) -> tuple:
    def integer(name, value):
        try:
            if isinstance(value, bool):
                raise TypeError
            value = operator.index(value)  # ints and numpy integers; not floats, strings or bools
        except TypeError:
            raise ValueError(f"event {name}: expected an integer, got {value!r}") from None
        if not -2**63 <= value < 2**63:
            raise ValueError(f"event {name}: {value} is out of the 64-bit range")
        return value

    user_id, item_id, feedback_type = (integer("user_id", user_id), integer("item_id", item_id),
                                        integer("feedback_type", feedback_type))
    if feedback_type not in FEEDBACK_TYPES:
        raise ValueError(f"event feedback_type: {feedback_type} is not one of {FEEDBACK_TYPES} "
                         "(0 cleared, 1 Dislike, 2 Like, 3 Love, 4 saved, 5 unsaved)")
    event_id = new_event_id() if event_id is None else str(event_id)
    if not 1 <= len(event_id) <= MAX_EVENT_ID_LENGTH:
        raise ValueError(f"event event_id: length {len(event_id)} is not in 1..{MAX_EVENT_ID_LENGTH}")
    timestamp = time.time() if timestamp is None else float(timestamp)
    if timestamp != timestamp or timestamp in (float("inf"), float("-inf")):
        raise ValueError(f"event timestamp: {timestamp} is not a finite number")
    if not 0 <= timestamp < MAX_TIMESTAMP:  # prep's range: one for every entry point
        raise ValueError(f"event timestamp: {timestamp} is outside 1970..2099 (Unix seconds)")
    return (event_id, user_id, None if session_id is None else str(session_id), item_id, feedback_type, timestamp)
