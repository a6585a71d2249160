"""No acknowledged feedback is lost, none is stored twice, when the server is SIGKILLed mid-run.

A real `uvicorn api:app` process serves the tiny checkpoint. 16 client threads post feedback events, each
with its own idempotency key (event_id), retrying any event that got no 2xx (connection refused or reset).
While they run, the server is SIGKILLed and started again. Afterwards every acknowledged event is in the
SQLite log exactly once, and nothing is there that was not sent.
"""
from __future__ import annotations

import sqlite3
import threading
import time

import httpx
import numpy as np
from harness import ServerProcess

from nostrade.dataset import load_dataset

N_CLIENTS = 16
EVENTS_PER_CLIENT = 25
KILL_AFTER_ACKS = N_CLIENTS * EVENTS_PER_CLIENT // 3
DEADLINE_S = 240


def test_acknowledged_feedback_survives_sigkill_exactly_once(tiny_checkpoint, processed_sample, tmp_path):
    db = tmp_path / "events.db"
    server = ServerProcess({"NOSTRADE_CHECKPOINT": str(tiny_checkpoint), "NOSTRADE_DATA": str(processed_sample),
                            "NOSTRADE_EVENTS": str(db)})
    item_ids = load_dataset(processed_sample).items["item_id"].to_numpy()[:EVENTS_PER_CLIENT].tolist()
    sent = {f"c{c}-e{e}": (1000 + c, item_ids[e], 1 + (c + e) % 3)
            for c in range(N_CLIENTS) for e in range(EVENTS_PER_CLIENT)}
    acked, failures, lock = set(), [0], threading.Lock()
    deadline = time.monotonic() + DEADLINE_S

    def client(c: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            for e in range(EVENTS_PER_CLIENT):
                event_id = f"c{c}-e{e}"
                user_id, item_id, feedback = sent[event_id]
                body = {"user_id": user_id, "item_id": item_id, "feedback": feedback, "event_id": event_id}
                while time.monotonic() < deadline:
                    try:
                        if http.post("/feedback", json=body).is_success:
                            with lock:
                                acked.add(event_id)
                            break
                    except httpx.TransportError:  # refused while down, reset when killed mid-request
                        pass
                    with lock:
                        failures[0] += 1
                    time.sleep(0.05)

    server.start()
    try:
        threads = [threading.Thread(target=client, args=(c,)) for c in range(N_CLIENTS)]
        for t in threads:
            t.start()
        while len(acked) < KILL_AFTER_ACKS and time.monotonic() < deadline:
            time.sleep(0.005)
        acked_before_kill = len(acked)
        server.kill()
        server.start()
        for t in threads:
            t.join()
    finally:
        server.stop()

    assert 0 < acked_before_kill < len(sent) and failures[0] > 0  # killed mid-run; clients saw it
    assert acked == set(sent), f"{len(sent) - len(acked)} events never acknowledged before the deadline"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT event_id, user_id, item_id, feedback_type FROM events").fetchall()
    stored_ids = [r[0] for r in rows]
    assert len(stored_ids) == len(set(stored_ids)) == len(sent)          # nothing twice, nothing extra
    assert {r[0]: tuple(r[1:]) for r in rows} == sent                    # every acknowledged event, intact
    pairs = np.array([r[1:3] for r in rows])
    assert len(np.unique(pairs, axis=0)) == len(rows)                    # no (user, title) duplicated either
