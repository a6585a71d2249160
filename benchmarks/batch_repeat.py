"""POST /recommend/batch for one known user listed 256 times, that user having 10,000 logged events (issue 30, 9).

Before the fix the service read and scored the user's history once per listed id (16.8 s in the report).
Runs the service in-process (FastAPI's TestClient, one worker's code path) on a checkpoint and processed folder
you give; the events are bulk-inserted into a fresh event log. Prints the median of --repeats and writes
artifacts/bench/batch_repeat.json.

    python benchmarks/batch_repeat.py --checkpoint checkpoints/model.pt --data data/processed
"""
from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

import api
from nostrade.atomic import write_json
from nostrade.events import EventLog
from predict import Recommender, use_threads

REPO = Path(__file__).resolve().parents[1]
USER, N_EVENTS, REPEATS_OF_USER = 888, 10_000, 256


def log_with_long_history(path: Path, item_ids: np.ndarray) -> None:
    EventLog(path).close()  # the schema
    rng = np.random.default_rng(0)
    rows = [(f"bench-{n}", USER, None, int(a), int(f), 1.6e9 + n)
            for n, (a, f) in enumerate(zip(rng.choice(item_ids, N_EVENTS), rng.integers(1, 4, N_EVENTS)))]
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO events (event_id, user_id, session_id, item_id, feedback_type, timestamp) "
                         "VALUES (?, ?, ?, ?, ?, ?)", rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints" / "model.pt")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "processed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench" / "batch_repeat.json")
    args = parser.parse_args(argv)
    use_threads(1)
    rec = Recommender.load(args.checkpoint, args.data)
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.db"
        log_with_long_history(events, rec.dataset.items["item_id"].to_numpy())
        body = {"user_ids": [USER] * REPEATS_OF_USER, "k": 100}
        seconds = []
        with TestClient(api.create_app(rec, events)) as client:
            for _ in range(args.repeats):
                started = time.perf_counter()
                response = client.post("/recommend/batch", json=body)
                seconds.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
    result = {"checkpoint": str(args.checkpoint), "model": rec.model.kind, "logged_events": N_EVENTS,
              "user_ids": REPEATS_OF_USER, "k": 100, "seconds": seconds, "median_s": statistics.median(seconds)}
    write_json(args.out, result)
    print(f"{REPEATS_OF_USER} x one user with {N_EVENTS:,} logged events, k 100: median {result['median_s']:.3f} s "
          f"over {args.repeats}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
