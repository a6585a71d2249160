"""The HTTP service: endpoints, validation, JSON errors, body caps, feedback loop, safety of files."""
from __future__ import annotations

import asyncio
import builtins
import io
import json
import os
import sqlite3

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

import api
import predict
from nostrade.checkpoint import CheckpointError
from nostrade.dataset import sha256_of
from nostrade.events import EventLog
from predict import Recommender

OUTSIDE_MODEL = 999_001  # a catalogue title the model does not know
NOT_IN_CATALOGUE = 888_888_888


@pytest.fixture(scope="module")
def rec(tiny_checkpoint, processed_sample) -> Recommender:
    """The tiny checkpoint, with one extra catalogue title outside the model's vocabulary."""
    loaded = Recommender.load(tiny_checkpoint, processed_sample)
    extra = pd.DataFrame({"item_id": [OUTSIDE_MODEL], "name": ["Outside The Model"], "genres": [["Comedy"]],
                          "type": ["TV"], "episodes": [12], "rating_mean": [7.0], "members": [5]})
    catalogue = pd.concat([loaded.catalogue, extra], ignore_index=True)
    return Recommender(loaded.model, loaded.dataset, catalogue)


@pytest.fixture
def events_path(tmp_path):
    return tmp_path / "events.db"


@pytest.fixture
def client(rec, processed_sample, events_path):
    app = api.create_app(rec, events_path, model_version="test-version")
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def vocab(rec: Recommender, n: int, seed: int = 0) -> list[int]:
    ids = rec.dataset.items["item_id"].to_numpy()
    return np.random.default_rng(seed).choice(ids, n, replace=False).tolist()


def history(ids, feedback=3) -> list[dict]:
    return [{"item_id": a, "feedback": feedback} for a in ids]


def assert_json_error(response, status: int, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) >= {"error", "detail"} and body["detail"]
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]
    return body


# ------------------------------------------------------------------------------------------------ health

def test_health_reports_version_counts_and_uptime(client, rec):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["event_log"] == "ok" and body["model_version"] == "test-version"
    assert body["catalogue_titles"] == len(rec.catalogue) == rec.dataset.n_items + 1
    assert body["model_titles"] == rec.dataset.n_items
    assert body["training_users"] == rec.dataset.sequences.n_users
    assert body["logged_events"] == 0 and body["uptime_s"] >= 0
    assert body["scored_requests"] == body["scoring_calls"] == 0
    client.post("/recommend", json={"history": history(vocab(rec, 3)), "k": 2})
    assert client.get("/health").json()["scored_requests"] == 1


def test_startup_loads_the_checkpoint_from_the_environment(tiny_checkpoint, processed_sample, tmp_path, monkeypatch):
    monkeypatch.setenv("NOSTRADE_CHECKPOINT", str(tiny_checkpoint))
    monkeypatch.setenv("NOSTRADE_DATA", str(processed_sample))
    monkeypatch.setenv("NOSTRADE_EVENTS", str(tmp_path / "log.db"))
    app = api.create_app()
    assert app.state.service is None  # nothing loaded before startup
    with TestClient(app) as c:
        body = c.get("/health").json()
    assert body["model_version"] == sha256_of(tiny_checkpoint)
    assert (tmp_path / "log.db").exists()


def lifespan_messages(app) -> list[dict]:
    """What the app tells the server at start-up (uvicorn prints a startup.failed message as it is)."""
    import asyncio
    sent = []

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(message):
        sent.append(message)

    with pytest.raises(Exception):
        asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}, receive,
                        send))
    return sent


@pytest.mark.parametrize("setting, value, says", [
    ("NOSTRADE_CHECKPOINT", "{tmp}/nope.pt", "{tmp}/nope.pt: no such checkpoint"),
    ("NOSTRADE_EVENTS", "{tmp}/text.db", "{tmp}/text.db: not an SQLite event log"),
    ("NOSTRADE_MAX_BODY_BYTES", "lots", "NOSTRADE_MAX_BODY_BYTES='lots' is not a non-negative integer"),
])
def test_start_up_refusals_are_one_line(tiny_checkpoint, processed_sample, tmp_path, monkeypatch, setting, value, says):
    """Defect: every start-up refusal printed a 19-47-line traceback before the right last line."""
    (tmp_path / "text.db").write_bytes(b"this is no database " * 50)
    monkeypatch.setenv("NOSTRADE_CHECKPOINT", str(tiny_checkpoint))
    monkeypatch.setenv("NOSTRADE_DATA", str(processed_sample))
    monkeypatch.setenv("NOSTRADE_EVENTS", str(tmp_path / "log.db"))
    monkeypatch.setenv(setting, value.format(tmp=tmp_path))
    sent = lifespan_messages(api.create_app())
    assert sent[-1]["type"] == "lifespan.startup.failed"
    assert sent[-1]["message"].startswith(f"error: {says.format(tmp=tmp_path)}") and "\n" not in sent[-1]["message"]


def test_settings_from_environment(tmp_path):
    s = api.Settings.from_env({"NOSTRADE_CHECKPOINT": "x/y.pt", "NOSTRADE_EVENTS": str(tmp_path / "e.db"),
                               "NOSTRADE_MAX_BODY_BYTES": "1000"})
    assert s.checkpoint == predict.REPO_ROOT / "x" / "y.pt" and s.events == tmp_path / "e.db"
    assert s.data == predict.REPO_ROOT / "data" / "processed" and s.catalogue is None and s.max_body_bytes == 1000
    assert s.max_batches == 2 and api.Settings.from_env({"NOSTRADE_MAX_BATCHES": "5"}).max_batches == 5
    with pytest.raises(ValueError, match="NOSTRADE_MAX_BODY_BYTES='lots' is not a non-negative integer"):
        api.Settings.from_env({"NOSTRADE_MAX_BODY_BYTES": "lots"})


# --------------------------------------------------------------------------------------------- recommend

def test_post_recommend_ranks_unseen_titles_with_scores_reasons_and_sources(client, rec):
    ids = vocab(rec, 8)
    r = client.post("/recommend", json={"history": history(ids), "k": 5, "alpha": 0.3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["path"] == "sequence+genre" and not body["cold_start"] and body["alpha"] == 0.3
    items = body["items"]
    assert [i["rank"] for i in items] == [1, 2, 3, 4, 5]
    assert not {i["item_id"] for i in items} & set(ids)
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    assert all(i["reason"] and i["source"] in {"sequence", "genre", "popularity"} for i in items)
    expected = rec.recommend([(a, 3, None) for a in ids], k=5, alpha=0.3).items  # the same code path
    assert [i["item_id"] for i in items] == expected["item_id"].tolist()


def test_a_served_ranker_names_the_generators_that_found_each_title(ranker_checkpoint, processed_anime, tmp_path):
    ranker = Recommender.load(ranker_checkpoint, processed_anime)
    with TestClient(api.create_app(ranker, tmp_path / "events.db", model_version="ranker")) as c:
        ids = vocab(ranker, 8)
        body = c.post("/recommend", json={"history": history(ids), "k": 5}).json()
        schema = c.get("/openapi.json").json()["components"]["schemas"]["RecommendedItem"]["properties"]
    assert schema["retrieved_by"]["type"] == "array"
    expected = ranker.recommend([(a, 3, None) for a in ids], k=5).items
    assert [i["retrieved_by"] for i in body["items"]] == expected["retrieved_by"].tolist()
    assert all(i["retrieved_by"] and i["reason"] for i in body["items"])


def test_a_single_model_answers_an_empty_retrieved_by(client, rec):
    body = client.post("/recommend", json={"history": history(vocab(rec, 5)), "k": 3}).json()
    assert [i["retrieved_by"] for i in body["items"]] == [[], [], []]


def test_integral_numbers_are_integers_as_in_json_schema(client, rec):
    ids = vocab(rec, 3)
    as_floats = {"history": [{"item_id": float(a), "feedback": 3} for a in ids], "k": 4.0}
    assert client.post("/recommend", json=as_floats).json() == client.post(
        "/recommend", json={"history": history(ids), "k": 4}).json()


def test_unknown_and_content_only_ids_are_reported_not_errors(client, rec):
    ids = vocab(rec, 3) + [NOT_IN_CATALOGUE, OUTSIDE_MODEL]
    r = client.post("/recommend", json={"history": history(ids), "k": 3})
    assert r.status_code == 200, r.text
    assert r.json()["unknown_ids"] == [NOT_IN_CATALOGUE] and r.json()["content_only_ids"] == [OUTSIDE_MODEL]


def test_empty_history_is_a_popularity_cold_start(client):
    body = client.post("/recommend", json={"k": 4}).json()
    assert body["path"] == "popularity" and body["cold_start"] and len(body["items"]) == 4


def test_filters_apply_and_unknown_filter_values_are_400(client, rec):
    genre = rec.genres[0]
    body = client.post("/recommend", json={"history": history(vocab(rec, 4)), "k": 5, "genres": [genre]}).json()
    assert body["items"] and all(genre in i["genres"] for i in body["items"])
    r = client.post("/recommend", json={"history": history(vocab(rec, 4)), "genres": ["Not A Genre"]})
    assert_json_error(r, 400, "genres", "Not A Genre")


@pytest.mark.parametrize("body, where", [
    ({"history": [], "surprise": 1}, "surprise"),                                  # unknown field
    ({"k": 0}, "k"), ({"k": api.API_MAX_K + 1}, "k"), ({"k": "5"}, "k"), ({"k": 2.5}, "k"),
    ({"alpha": 1.5}, "alpha"), ({"alpha": "0.2"}, "alpha"),
    ({"history": [{"item_id": "5"}]}, "item_id"),                                 # ids are JSON integers
    ({"history": [{"item_id": 5.5}]}, "item_id"), ({"history": [{"item_id": True}]}, "item_id"),
    ({"history": [{"item_id": -1}]}, "item_id"), ({"history": [{"item_id": 2**60}]}, "item_id"),
    ({"history": [{"item_id": 5, "feedback": 4}]}, "feedback"),
    ({"history": [{"item_id": 5, "feedback": "meh"}]}, "feedback"),
    ({"history": [{"item_id": 5, "extra": 1}]}, "extra"),
    ({"history": [{"item_id": 5, "timestamp": -3}]}, "timestamp"),
    ({"history": [{"item_id": 5}] * (api.MAX_HISTORY + 1)}, "history"),
    ({"genres": ["x"] * (api.MAX_FILTER_VALUES + 1)}, "genres"), ({"min_members": -1}, "min_members"),
    ({"history": {"item_id": 5}}, "history"),
])
def test_invalid_bodies_are_422_naming_the_field(client, body, where):
    body = assert_json_error(client.post("/recommend", json=body), 422, where)
    assert body["error"] == "validation_error" and body["errors"]


@pytest.mark.parametrize("raw, content_type", [
    (b'{"history": [', "application/json"),                       # malformed
    (b'{"history": [{"item_id": 5, "timestamp": NaN}]}', "application/json"),
    (b'[1, 2]', "application/json"), (b'"text"', "application/json"),
    (b'history=1', "application/x-www-form-urlencoded"),
])
def test_malformed_json_is_422(client, raw, content_type):
    assert_json_error(client.post("/recommend", content=raw, headers={"content-type": content_type}), 422)


def test_unknown_routes_and_methods_are_json_errors(client):
    assert_json_error(client.get("/nope"), 404)
    assert_json_error(client.delete("/recommend"), 405)


def test_an_unexpected_crash_is_a_json_500_without_internals(client, rec, monkeypatch):
    monkeypatch.setattr(rec, "recommend", lambda *a, **k: 1 / 0)
    body = assert_json_error(client.post("/recommend", json={}), 500)
    assert "ZeroDivision" not in json.dumps(body)


# ----------------------------------------------------------------------------------------- known users

def test_known_user_history_comes_from_training_data_with_timestamps(client, rec, processed_sample):
    user_id = int(rec.dataset.user_ids[3])
    r = client.get("/recommend", params={"user_id": user_id, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    trained = rec.dataset.sequences.take(np.array([3]))
    assert body["user_id"] == user_id and body["n_training_events"] == len(trained.iid) and body["n_logged_events"] == 0
    seen = set(rec.dataset.items["item_id"].to_numpy()[trained.iid - 1].tolist())
    assert not {i["item_id"] for i in body["items"]} & seen
    interactions = pd.read_parquet(processed_sample / "interactions.parquet")
    events, _, _ = client.app.state.service.users.of(user_id)
    assert [e[2] for e in events] == interactions.loc[interactions["user_id"] == user_id, "timestamp"].tolist()


def test_feedback_shows_in_the_next_recommendation_and_retries_are_stored_once(client, rec, events_path):
    user_id = int(rec.dataset.user_ids[0])
    before = client.get("/recommend", params={"user_id": user_id, "k": 3}).json()
    top = before["items"][0]["item_id"]
    feedback = {"user_id": user_id, "item_id": top, "feedback": "Love", "event_id": "evt-1"}
    r = client.post("/feedback", json=feedback)
    assert r.status_code == 201 and r.json() == {"stored": True, "event_id": "evt-1"}
    after = client.get("/recommend", params={"user_id": user_id, "k": 3}).json()
    assert after["n_logged_events"] == 1 and top not in [i["item_id"] for i in after["items"]]
    retry = client.post("/feedback", json=feedback)
    assert retry.status_code == 200 and retry.json() == {"stored": False, "event_id": "evt-1"}
    stored = EventLog(events_path).events()
    assert stored[["event_id", "user_id", "item_id", "feedback_type"]].values.tolist() == [["evt-1", user_id, top, 3]]
    assert client.get("/health").json()["logged_events"] == 1


def test_a_new_user_exists_once_they_gave_feedback(client, rec):
    stranger = 10**12
    assert_json_error(client.get("/recommend", params={"user_id": stranger}), 404, f"user_id {stranger}")
    liked = vocab(rec, 2)
    for item_id in liked:
        assert client.post("/feedback", json={"user_id": stranger, "item_id": item_id, "feedback": 2}).status_code == 201
    body = client.get("/recommend", params={"user_id": stranger, "k": 4}).json()
    assert body["n_training_events"] == 0 and body["n_logged_events"] == 2 and body["path"] == "sequence+genre"
    assert not {i["item_id"] for i in body["items"]} & set(liked)


def test_requests_naming_a_title_accept_the_deprecated_anime_id(client, rec, events_path):
    ids = vocab(rec, 3)
    old = [{"anime_id": a, "feedback": 3} for a in ids]
    assert client.post("/recommend", json={"history": old, "k": 5}).json() == \
        client.post("/recommend", json={"history": history(ids), "k": 5}).json()
    batch = client.post("/recommend/batch", json={"histories": [old], "k": 5})
    assert batch.status_code == 200 and len(batch.json()["results"][0]["item_ids"]) == 5
    r = client.post("/feedback", json={"user_id": 7, "anime_id": ids[0], "feedback": "Like", "event_id": "old-1"})
    assert r.status_code == 201
    assert EventLog(events_path).events()[["event_id", "item_id"]].values.tolist() == [["old-1", ids[0]]]
    both = {"user_id": 7, "item_id": ids[1], "anime_id": ids[2], "feedback": "Like"}
    assert_json_error(client.post("/feedback", json=both), 422, "anime_id")
    assert EventLog(events_path).count() == 1


@pytest.mark.parametrize("params, status", [({"user_id": "abc"}, 422), ({"user_id": -1}, 422), ({}, 422),
                                            ({"user_id": 1, "k": 0}, 422), ({"user_id": 1, "colour": "red"}, 422),
                                            ({"user_id": 1, "genres": "Not A Genre"}, 400)])
def test_bad_known_user_queries(client, params, status):
    assert_json_error(client.get("/recommend", params=params), status)


@pytest.mark.parametrize("body, status", [
    ({"user_id": 1, "item_id": NOT_IN_CATALOGUE, "feedback": 3}, 404),
    ({"user_id": 1, "item_id": 2, "feedback": 0}, 422), ({"user_id": 1, "item_id": 2}, 422),
    ({"user_id": 1, "item_id": 2, "feedback": 3, "event_id": "../../etc/passwd"}, 422),
    ({"user_id": 1, "item_id": 2, "feedback": 3, "event_id": "x" * 129}, 422),
    ({"user_id": 1, "item_id": 2, "feedback": 3, "rating": 9}, 422),
    ({"user_id": "1", "item_id": 2, "feedback": 3}, 422),
])
def test_bad_feedback_is_refused_and_not_stored(client, events_path, body, status):
    assert_json_error(client.post("/feedback", json=body), status)
    assert EventLog(events_path).count() == 0


# ------------------------------------------------------------------------------- cold start, similar, search

def test_cold_start_from_liked_ids(client, rec):
    one, two = vocab(rec, 2)
    body = client.get("/recommend_cold", params={"liked": f"{one}", "k": 4}).json()
    assert body["path"] == "sequence+genre" and len(body["items"]) == 4  # the model scores one title it knows
    body = client.get("/recommend_cold", params={"liked": f"{one},{two},{NOT_IN_CATALOGUE}", "k": 4}).json()
    assert body["path"] == "sequence+genre" and body["unknown_ids"] == [NOT_IN_CATALOGUE]
    assert not {one, two} & {i["item_id"] for i in body["items"]}


@pytest.mark.parametrize("liked", ["", "a,b", "1,,2", "1;2", "-5", "9" * 17, "５,１９", "٣"])
def test_cold_start_rejects_malformed_id_lists(client, liked):
    assert_json_error(client.get("/recommend_cold", params={"liked": liked}), 422, "liked")


def test_similar_titles(client, rec):
    item_id = vocab(rec, 1)[0]
    body = client.get(f"/similar/{item_id}", params={"k": 5}).json()
    assert body["item_id"] == item_id and len(body["items"]) == 5
    assert item_id not in [i["item_id"] for i in body["items"]]
    assert all(i["source"] == "embedding" for i in body["items"])
    assert client.get(f"/similar/{OUTSIDE_MODEL}").json()["items"][0]["source"] == "genre"
    assert_json_error(client.get(f"/similar/{NOT_IN_CATALOGUE}"), 404, str(NOT_IN_CATALOGUE))
    assert_json_error(client.get("/similar/abc"), 422)
    assert_json_error(client.get(f"/similar/{item_id}", params={"k": 0}), 422)


def test_title_search(client, rec):
    name = rec.catalogue["name"].iloc[10]
    body = client.get("/items", params={"q": name.lower(), "limit": 3}).json()
    assert body["query"] == name.lower() and body["items"][0]["name"] == name
    assert set(body["items"][0]) == set(api.TITLE_FIELDS) | {"match"}
    assert client.get("/items", params={"q": "zzzzqqqxxx"}).json()["items"] == []
    assert_json_error(client.get("/items", params={"q": ""}), 422)
    assert_json_error(client.get("/items", params={"q": "x" * 201}), 422)


# ------------------------------------------------------------------------------------------------- batch

def test_batch_scores_known_users_and_histories_like_single_requests(client, rec):
    users = [int(u) for u in rec.dataset.user_ids[:3]]
    ids = vocab(rec, 6)
    r = client.post("/recommend/batch", json={"user_ids": users, "histories": [history(ids), [], history(ids[:1] + [NOT_IN_CATALOGUE])], "k": 4})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["user_id"] for x in results] == users + [None] * 3 and [x["index"] for x in results] == [None] * 3 + [0, 1, 2]
    single = client.post("/recommend", json={"history": history(ids), "k": 4, "explain": False}).json()
    assert results[3]["item_ids"] == [i["item_id"] for i in single["items"]]
    assert np.allclose(results[3]["scores"], [i["score"] for i in single["items"]], atol=1e-6)
    known = client.get("/recommend", params={"user_id": users[1], "k": 4}).json()
    assert results[1]["item_ids"] == [i["item_id"] for i in known["items"]]
    assert [x["path"] for x in results[3:]] == ["sequence+genre", "popularity", "sequence+genre"]
    assert results[5]["unknown_ids"] == [NOT_IN_CATALOGUE]


def test_batch_limits_and_unknown_users(client):
    assert_json_error(client.post("/recommend/batch", json={"user_ids": [10**12]}), 404, str(10**12))
    assert_json_error(client.post("/recommend/batch", json={"histories": [[]] * (api.MAX_BATCH + 1)}), 422, "histories")
    assert client.post("/recommend/batch", json={}).json()["results"] == []


def test_a_batch_reads_and_scores_each_distinct_user_once_and_caps_each_history(client, rec, monkeypatch):
    """Defect: [888] * 256 re-read a 10,000-event log 256 times (16.8 s) and scored it 256 times."""
    from nostrade.history import UserHistories
    user = int(rec.dataset.user_ids[0])
    reads, scored = [], []
    real_of, real_batch = UserHistories.of, Recommender.recommend_batch
    monkeypatch.setattr(UserHistories, "of", lambda self, u: reads.append(u) or real_of(self, u))
    monkeypatch.setattr(Recommender, "recommend_batch",
                        lambda self, histories, **kw: scored.extend(map(len, histories)) or real_batch(self, histories,
                                                                                                         **kw))
    monkeypatch.setattr(api, "MAX_BATCH_HISTORY", 2)
    r = client.post("/recommend/batch", json={"user_ids": [user] * api.MAX_BATCH, "histories": [history(vocab(rec, 3))],
                                              "k": 5})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert reads == [user] and scored == [2, 3]  # the user read and scored once (their last 2 events), the history
    assert len(results) == api.MAX_BATCH + 1 and all(x == results[0] for x in results[:api.MAX_BATCH])
    assert results[-1]["index"] == 0 and results[0]["user_id"] == user


def test_concurrent_batches_are_capped_with_a_json_429(rec, events_path):
    settings = api.Settings(checkpoint=None, data=None, catalogue=None, events=events_path, max_body_bytes=1 << 20,
                            threads=1, max_batches=1)
    app = api.create_app(rec, events_path, settings=settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert app.state.batch_slots.acquire(blocking=False)  # a batch is running
        r = c.post("/recommend/batch", json={"histories": [[]]})
        assert_json_error(r, 429, "1 batch request is already running")["error"] == "too_many_requests"
        assert r.headers["retry-after"] == "1"
        app.state.batch_slots.release()
        assert c.post("/recommend/batch", json={"histories": [[]]}).status_code == 200


# ------------------------------------------------------------------------------------------------ safety

@pytest.fixture
def small_cap_client(rec, events_path):
    settings = api.Settings(checkpoint=None, data=None, catalogue=None, events=events_path, max_body_bytes=2000,
                            threads=1)
    with TestClient(api.create_app(rec, events_path, settings=settings), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("content_length", [b"abc", b"-1", b"1, 2"])
def test_a_bad_content_length_gets_json_from_the_server_itself(rec, events_path, content_length):
    """Defect: a Content-Length the HTTP parser rejects (before the app sees the request) got uvicorn's plain text."""
    import socket
    import threading
    import uvicorn
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api.create_app(rec, events_path), host="127.0.0.1", port=port,
                                           http=api.JSONErrorsHTTP, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.02)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + content_length + b"\r\n\r\n{}")
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
    finally:
        server.should_exit = True
        thread.join(10)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"error": "bad_request", "detail": "invalid HTTP request (e.g. a bad Content-Length "
                                                                  "or a malformed header line)"}


def test_a_declared_oversized_body_is_413(small_cap_client):
    body = json.dumps({"history": [{"item_id": 1}] * 200}).encode()
    assert len(body) > 2000
    assert_json_error(small_cap_client.post("/recommend", content=body, headers={"content-type": "application/json"}),
                      413, "2,000-byte")
    assert_json_error(small_cap_client.post("/recommend", content=b"{}",
                                            headers={"content-type": "application/json", "content-length": "x1"}), 400)
    assert small_cap_client.post("/recommend", json={"k": 2}).status_code == 200


def test_a_streamed_oversized_body_is_413(small_cap_client):
    chunk = json.dumps({"history": [{"item_id": 1}] * 200}).encode()

    def stream():  # no Content-Length: chunked transfer
        yield chunk[:1500]
        yield chunk[1500:]

    r = small_cap_client.post("/recommend", content=stream(), headers={"content-type": "application/json"})
    assert_json_error(r, 413, "2,000-byte")


def test_checkpoints_load_with_weights_only(tiny_checkpoint, processed_sample, tmp_path, monkeypatch):
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    api.load_service(api.Settings(tiny_checkpoint, processed_sample, None, tmp_path / "e.db", 1000, 1))
    assert calls and all(c.get("weights_only") is True for c in calls)


class Payload:
    """Runs code when unpickled (here: creates a file), as a malicious checkpoint would."""
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_carrying_code_is_refused_and_the_code_never_runs(processed_sample, tmp_path):
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"model_state": Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused: it holds objects other than tensors"):
        api.load_service(api.Settings(evil, processed_sample, None, tmp_path / "e.db", 1000, 1))
    assert not marker.exists()


def test_a_checkpoint_with_flipped_bytes_is_refused_at_startup(tiny_checkpoint, processed_sample, tmp_path):
    """Defect: 4 bytes overwritten inside the weights loaded fine and served NaN scores ("similarity": null)."""
    from test_checkpoint import flip_bytes_of
    damaged = tmp_path / "sasrec.pt"
    damaged.write_bytes(tiny_checkpoint.read_bytes())
    weights = torch.load(tiny_checkpoint, weights_only=True)["model_state"]
    flip_bytes_of(damaged, max(weights.values(), key=lambda t: t.numel()))
    with pytest.raises(CheckpointError, match=rf"^{damaged}: damaged: its weights do not match the checksum"):
        api.load_service(api.Settings(damaged, processed_sample, None, tmp_path / "e.db", 1000, 1))


def test_a_file_that_is_not_an_event_log_stops_startup_and_is_left_as_it_was(tiny_checkpoint, processed_sample,
                                                                           tmp_path):
    from nostrade.events import NotAnEventLog
    from test_events import foreign_database
    before = foreign_database(tmp_path / "app.db")
    with pytest.raises(NotAnEventLog, match="another application"):
        api.load_service(api.Settings(tiny_checkpoint, processed_sample, None, tmp_path / "app.db", 1000, 1))
    assert (tmp_path / "app.db").read_bytes() == before


PATHLIKE = ["../../etc/passwd", "/tmp/nostrade-evil", "..\\..\\boot.ini", "file:///etc/shadow", "~/.ssh/id_rsa"]


def test_no_request_value_becomes_a_file_path(client, rec, events_path, monkeypatch):
    """Every file opened while serving is the configured event log, whatever the requests carry."""
    opened = []
    real_open, real_os_open, real_connect = builtins.open, os.open, sqlite3.connect
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    monkeypatch.setattr(io, "open", builtins.open)
    monkeypatch.setattr(os, "open", lambda f, *a, **k: opened.append(str(f)) or real_os_open(f, *a, **k))
    monkeypatch.setattr(sqlite3, "connect", lambda f, *a, **k: opened.append(str(f)) or real_connect(f, *a, **k))
    for value in PATHLIKE:
        client.post("/recommend", json={"history": [], "genres": [value], "types": [value]})
        client.get("/items", params={"q": value})
        client.get("/recommend", params={"user_id": 1, "genres": value})
        client.get(f"/similar/{value}")
        client.get("/recommend_cold", params={"liked": value})
        client.post("/feedback", json={"user_id": 1, "item_id": 2, "feedback": 2, "event_id": value,
                                       "session_id": value})
        client.post("/feedback", json={"user_id": 2, "item_id": 2, "feedback": 2, "session_id": value})
    assert str(events_path) in opened and set(opened) <= {str(events_path)}  # the spy sees the log's opens
    assert not any(os.path.exists(os.path.expanduser(v)) for v in PATHLIKE[1:])


# ------------------------------------------------------------------------------------------------ hardening

def test_a_reused_event_id_with_another_payload_is_409_naming_the_key(client, rec, events_path):
    item_id = vocab(rec, 1)[0]
    first = {"user_id": 5, "item_id": item_id, "feedback": "Love", "event_id": "key-1"}
    assert client.post("/feedback", json=first).status_code == 201
    assert client.post("/feedback", json=first).status_code == 200  # a true retry
    body = assert_json_error(client.post("/feedback", json={**first, "feedback": "Dislike"}), 409, "event_id 'key-1'")
    assert body["error"] == "conflict"
    assert EventLog(events_path).events()["feedback_type"].tolist() == [3]


@pytest.mark.parametrize("path, params", [("/recommend", [("user_id", "1"), ("user_id", "2")]),
                                          ("/recommend_cold", [("liked", "1"), ("liked", "2")]),
                                          ("/items", [("q", "a"), ("q", "b")]),
                                          ("/recommend_cold", [("liked", "1"), ("k", "3"), ("k", "4")])])
def test_a_repeated_single_valued_parameter_is_422(client, path, params):
    name = params[-1][0]
    body = assert_json_error(client.get(path, params=params), 422, f"query.{name}: given 2 times")
    assert body["errors"][0]["loc"] == ["query", name]


def test_list_filters_may_repeat(client, rec):
    genre = rec.genres[0]
    r = client.get("/recommend_cold", params=[("liked", str(vocab(rec, 1)[0])), ("genres", genre), ("genres", genre)])
    assert r.status_code == 200


@pytest.fixture
def damaged_client(rec, tmp_path):
    from test_events import damage_index
    path = tmp_path / "damaged.db"
    damage_index(path)
    with TestClient(api.create_app(rec, path, model_version="test-version")) as c:
        yield c


def test_a_damaged_event_log_is_found_at_startup_and_feedback_is_503(damaged_client, rec):
    health = damaged_client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "degraded" and body["event_log"].startswith("damaged: ") and body["logged_events"] is None
    r = damaged_client.post("/feedback", json={"user_id": 1, "item_id": vocab(rec, 1)[0], "feedback": 2})
    assert assert_json_error(r, 503, "the event log cannot be used (damaged: ")["error"] == "event_log_unavailable"
    assert_json_error(damaged_client.get("/recommend", params={"user_id": int(rec.dataset.user_ids[0])}), 503)
    assert damaged_client.post("/recommend", json={"history": history(vocab(rec, 2))}).status_code == 200


def test_a_sqlite_failure_during_a_request_is_503_not_500(client, rec, monkeypatch):
    import sqlite3

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(EventLog, "append", full)
    r = client.post("/feedback", json={"user_id": 1, "item_id": vocab(rec, 1)[0], "feedback": 2})
    assert_json_error(r, 503, "database or disk is full")


def test_feedback_to_a_deleted_event_log_is_503_and_health_says_so(client, rec, events_path):
    """Defect: with events.db deleted under the service, POST /feedback said 201 stored and /health ok; all lost."""
    from test_events import remove_log
    anime = vocab(rec, 1)[0]
    assert client.post("/feedback", json={"user_id": 1, "item_id": anime, "feedback": 2}).status_code == 201
    remove_log(events_path)
    r = client.post("/feedback", json={"user_id": 1, "item_id": anime, "feedback": 3})
    assert_json_error(r, 503, "deleted while this process had it open", "nothing was stored")
    body = client.get("/health").json()
    assert body["status"] == "degraded" and "deleted while this process had it open" in body["event_log"]


def test_a_future_rating_can_be_corrected_and_the_range_is_prep_s(client, rec, events_path):
    """Defect: Love stamped 4.0e9, then Dislike without a timestamp: both 201, and the Love stayed."""
    from nostrade.history import UserHistories
    from nostrade.sources import MAX_TIMESTAMP
    anime = vocab(rec, 1)[0]
    for body in ({"feedback": "Love", "timestamp": 4.0e9}, {"feedback": "Dislike"}):
        assert client.post("/feedback", json={"user_id": 3_000_000_000, "item_id": anime, **body}).status_code == 201
    assert UserHistories(rec.dataset, EventLog(events_path)).frame(3_000_000_000)["feedback"].tolist() == [1]
    r = client.post("/feedback", json={"user_id": 7, "item_id": anime, "feedback": 2, "timestamp": MAX_TIMESTAMP})
    assert_json_error(r, 422, "body.timestamp")
    r = client.post("/recommend", json={"history": [{"item_id": anime, "timestamp": 3.2e10}]})
    assert_json_error(r, 422, "body.history.0.timestamp")


# ---------------------------------------------------------------------------------------------- micro-batching

def answers_concurrently(app, bodies: list[dict]) -> list[dict]:
    async def send_all():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*(c.post("/recommend", json=body) for body in bodies))
    return [r.json() for r in asyncio.run(send_all())]


@pytest.mark.parametrize("model", ["sasrec", "ranker"])
def test_requests_sent_together_are_scored_in_one_call_and_answered_as_one_by_one(
        model, rec, ranker_checkpoint, processed_anime, tmp_path):
    served = rec if model == "sasrec" else Recommender.load(ranker_checkpoint, processed_anime)
    bodies = [{"history": history(vocab(served, n, seed=n), feedback=1 + n % 3), "k": 8} for n in (1, 3, 12, 40)]
    bodies += [{"history": history(vocab(served, 6, seed=7)), "k": 5, "alpha": 0.5}, {"history": [], "k": 4}]
    patient = api.Settings.from_env({"NOSTRADE_MICROBATCH_WAIT_MS": "1000"})  # however slow this host is now
    app = api.create_app(served, tmp_path / "events.db", model_version=model, settings=patient)
    together = answers_concurrently(app, bodies)
    batcher = app.state.service.batcher
    assert batcher.counts.requests == len(bodies) and batcher.counts.calls == 2  # the default alpha's, and 0.5's
    with TestClient(app) as c:
        one_by_one = [c.post("/recommend", json=body).json() for body in bodies]
    for mine, alone in zip(together, one_by_one):
        assert [i["item_id"] for i in mine["items"]] == [i["item_id"] for i in alone["items"]]
        for field in ("reason", "source", "retrieved_by", "explanations"):
            assert [i[field] for i in mine["items"]] == [i[field] for i in alone["items"]]
        assert np.allclose([i["score"] for i in mine["items"]], [i["score"] for i in alone["items"]], atol=1e-6)
        assert {k: v for k, v in mine.items() if k != "items"} == {k: v for k, v in alone.items() if k != "items"}
