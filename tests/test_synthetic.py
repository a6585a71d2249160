"""The synthetic generator: deterministic, in the anime raw format, with the structure it promises."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nostrade.sources import read_anime
from nostrade.synthetic import GENRES, SyntheticConfig, generate, write_synthetic

CFG = SyntheticConfig(n_users=400, n_items=200, interactions_per_user=40, seed=3)


@pytest.fixture(scope="module")
def data():
    return generate(CFG)


def test_same_seed_same_data_other_seed_other_data(data):
    again = generate(CFG)
    pd.testing.assert_frame_equal(data.ratings, again.ratings)
    pd.testing.assert_frame_equal(data.catalogue, again.catalogue)
    other = generate(SyntheticConfig(**{**CFG.__dict__, "seed": 4}))
    assert not other.ratings["anime_id"].equals(data.ratings["anime_id"].iloc[:len(other.ratings)])


def test_raw_format(data):
    r, cat = data.ratings, data.catalogue
    assert list(r.columns) == ["user_id", "anime_id", "rating", "timestamp"]
    assert list(cat.columns) == ["anime_id", "name", "genre", "type", "episodes", "rating", "members"]
    assert r["user_id"].nunique() == CFG.n_users and len(cat) == CFG.n_items and cat["anime_id"].is_unique
    assert set(r["anime_id"]) <= set(cat["anime_id"])
    assert set(r["rating"].unique()) <= {-1, *range(1, 11)}
    assert abs((r["rating"] == -1).mean() - CFG.unrated_share) < 0.02
    assert not r.duplicated(["user_id", "anime_id"]).any()
    # file order as Kaggle's: by user, then anime_id; time order only through the timestamps
    assert r.equals(r.sort_values(["user_id", "anime_id"]).reset_index(drop=True))
    t0, t1 = (pd.Timestamp(x, tz="UTC").timestamp() for x in (CFG.start, CFG.end))
    assert r["timestamp"].between(t0, t1).all()
    # repeated (user, item) draws are dropped, so heavy users in a small catalogue fall somewhat short
    assert 0.7 * CFG.interactions_per_user < len(r) / CFG.n_users <= CFG.interactions_per_user
    assert cat["episodes"].eq("Unknown").any() and cat["name"].str.contains("&amp;").any()


def test_power_law_popularity(data):
    counts = np.sort(data.ratings["anime_id"].value_counts().to_numpy())[::-1]
    assert counts[: len(counts) // 10].sum() > 0.3 * counts.sum()  # top 10% of items: > 30% of events
    assert counts[0] > 5 * np.median(counts)


def _genre_matrix(data) -> tuple[pd.DataFrame, np.ndarray]:
    """Events in time order per user, and each event's item genres as a (n_events, n_genres) 0/1 matrix."""
    events = data.ratings.sort_values(["user_id", "timestamp"]).reset_index(drop=True)
    genres = data.catalogue.set_index("anime_id")["genre"].str.split(", ")
    onehot = np.array([[g in gs for g in GENRES] for gs in genres.loc[events["anime_id"]]], dtype=float)
    return events, onehot


def test_feedback_follows_taste(data):
    events, onehot = _genre_matrix(data)
    users = events["user_id"].to_numpy() - 1
    progress = events.groupby("user_id").cumcount() / events.groupby("user_id")["anime_id"].transform("size")
    p = progress.to_numpy()[:, None]
    taste = (1 - p) * data.taste_start[users] + p * data.taste_end[users]
    affinity = (taste * onehot).sum(1) / onehot.sum(1)
    rated = events["rating"].to_numpy() > 0
    corr = np.corrcoef(affinity[rated], events["rating"].to_numpy()[rated])[0, 1]
    assert corr > 0.2


def test_tastes_drift_over_time(data):
    events, onehot = _genre_matrix(data)
    late = (events.groupby("user_id").cumcount() >= events.groupby("user_id")["anime_id"].transform("size") / 2)
    users = events["user_id"].to_numpy() - 1
    closer_to_end = []
    for half in (False, True):
        rows = (late == half).to_numpy()
        mix = np.zeros((CFG.n_users, len(GENRES)))
        np.add.at(mix, users[rows], onehot[rows])
        mix /= mix.sum(1, keepdims=True)
        to_start = np.abs(mix - data.taste_start).sum(1)
        to_end = np.abs(mix - data.taste_end).sum(1)
        closer_to_end.append((to_end < to_start).mean())
    # the first half of a user's events is mostly nearer the start taste, the second half nearer the end taste
    assert closer_to_end[0] < 0.4 and closer_to_end[1] > 0.55 and closer_to_end[1] - closer_to_end[0] > 0.25


def test_written_files_read_as_anime_and_are_marked_synthetic(tmp_path):
    cfg = SyntheticConfig(n_users=30, n_items=20, interactions_per_user=5, seed=1)
    items, ratings = write_synthetic(cfg, tmp_path)
    raw = read_anime(items, ratings)
    assert raw.has_timestamps and raw.synthetic["seed"] == 1 and raw.synthetic["generator"] == "nostrade.synthetic"
    assert len(raw.ratings) == len(generate(cfg).ratings)
    first = (tmp_path / "rating.csv").read_text().splitlines()[0]
    assert first == "user_id,anime_id,rating,timestamp"
    assert json.loads((tmp_path / "synthetic.json").read_text())["n_users"] == 30
