"""Deterministic, seeded generator of anime-like data in the Kaggle anime raw format plus timestamps.

Structure it builds in, so that models have something real to find:
- power-law popularity: item weights fall as rank^-popularity_exponent;
- users with genre tastes (Dirichlet) that drift from a start taste to an end taste over their own
  timeline (each event's genre comes from the end taste with probability = how far along it is;
  a small share of events explore a uniformly random genre);
- ratings correlated with taste: the user's current affinity for the item's genres, plus item
  quality, user bias and noise; a share of events are -1 (watched, not rated);
- unix timestamps, increasing within each user.

Everything is vectorised numpy; the 7.8M-rating benchmark set takes seconds. ``write_synthetic``
writes ``anime.csv``, ``rating.csv`` and ``synthetic.json`` (the settings; its presence marks data
processed from these files as synthetic).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from nostrade.sources import SYNTHETIC_MARKER

GENRES = ["Action", "Adventure", "Comedy", "Drama", "Fantasy", "Romance", "Sci-Fi", "Slice of Life", "School",
          "Shounen", "Supernatural", "Mystery", "Mecha", "Sports", "Music", "Historical", "Horror",
          "Psychological", "Magic", "Military"]
TYPES = ["TV", "Movie", "OVA", "Special", "ONA", "Music"]
MAX_GENRES_PER_ITEM = 4


@dataclass
class SyntheticConfig:
    n_users: int = 1000
    n_items: int = 500
    interactions_per_user: float = 50.0  # mean; lengths are log-normal around it
    seed: int = 0
    popularity_exponent: float = 1.0
    taste_concentration: float = 0.3  # Dirichlet alpha: smaller = narrower tastes
    exploration: float = 0.15  # share of events whose genre is picked uniformly (outside the taste)
    unrated_share: float = 0.2  # share of -1 ratings (the real sample has 19.8%)
    start: str = "2012-01-01"  # timestamps fall between start and end (UTC)
    end: str = "2018-01-01"


@dataclass
class SyntheticData:
    catalogue: pd.DataFrame  # Kaggle anime.csv columns
    ratings: pd.DataFrame  # user_id, anime_id, rating, timestamp, ordered by user then anime_id (as Kaggle's)
    taste_start: np.ndarray  # (n_users, n_genres) the hidden tastes, for tests
    taste_end: np.ndarray


def _item_genres(rng, n_items: int) -> np.ndarray:
    """(n_items, MAX_GENRES_PER_ITEM) genre indices, -1 padded; 1 to 4 distinct genres each."""
    counts = rng.integers(1, MAX_GENRES_PER_ITEM + 1, size=n_items)
    picks = np.argsort(rng.random((n_items, len(GENRES))), axis=1)[:, :MAX_GENRES_PER_ITEM]
    return np.where(np.arange(MAX_GENRES_PER_ITEM) < counts[:, None], picks, -1)


def _sample_categorical(rng, cum: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each entry of ``rows``, a column index drawn from row ``rows[k]`` of the row-wise cumulative
    distribution ``cum`` (rows end at 1): one searchsorted over all rows laid end to end."""
    n_rows, n_cols = cum.shape
    flat = (cum + np.arange(n_rows)[:, None]).ravel()
    hits = np.searchsorted(flat, rows + rng.random(len(rows)), side="right")
    return np.minimum(hits - rows * n_cols, n_cols - 1)


def generate(cfg: SyntheticConfig) -> SyntheticData:
    rng = np.random.default_rng(cfg.seed)
    n_users, n_items, n_genres = cfg.n_users, cfg.n_items, len(GENRES)

    item_genres = _item_genres(rng, n_items)
    popularity = rng.permutation(np.arange(1, n_items + 1) ** -cfg.popularity_exponent)
    quality = rng.normal(0.0, 0.8, n_items)
    anime_ids = np.sort(rng.choice(np.arange(1, 4 * n_items + 1), size=n_items, replace=False)).astype(np.int64)

    taste_start = rng.dirichlet(np.full(n_genres, cfg.taste_concentration), n_users)
    taste_end = rng.dirichlet(np.full(n_genres, cfg.taste_concentration), n_users)
    user_bias = rng.normal(0.0, 0.7, n_users)

    # Per-user lengths, then 2x candidate events (repeats of an item are dropped below).
    sigma = 1.0
    lengths = np.rint(cfg.interactions_per_user * rng.lognormal(-sigma ** 2 / 2, sigma, n_users)).astype(np.int64)
    lengths = np.clip(lengths, 3, max(3, n_items // 2))
    n_cand = np.ceil(lengths * 2.0).astype(np.int64)
    user = np.repeat(np.arange(n_users), n_cand)
    first = np.repeat(np.cumsum(n_cand) - n_cand, n_cand)
    progress = (np.arange(len(user)) - first + rng.random(len(user))) / np.repeat(n_cand, n_cand)  # in [0, 1)

    # Genre from the drifting taste (a mixture of start and end), then an item of that genre by popularity.
    late = rng.random(len(user)) < progress
    tastes = np.concatenate([taste_start, taste_end])
    cum = np.cumsum(tastes, axis=1)
    cum /= cum[:, -1:]
    genre = _sample_categorical(rng, cum, user + late * n_users)
    explore = rng.random(len(user)) < cfg.exploration
    genre[explore] = rng.integers(0, n_genres, int(explore.sum()))
    item = np.empty(len(user), dtype=np.int64)
    for g in range(n_genres):
        members = np.flatnonzero((item_genres == g).any(axis=1))
        events = np.flatnonzero(genre == g)
        if len(members) == 0:
            members = np.arange(n_items)
        weights = np.cumsum(popularity[members])
        item[events] = members[np.searchsorted(weights / weights[-1], rng.random(len(events)), side="right")
                               .clip(0, len(members) - 1)]

    # Keep each (user, item) once (its first time) and at most `lengths[user]` events per user.
    keep = ~pd.Series(user * n_items + item).duplicated().to_numpy()
    user, item, progress = user[keep], item[keep], progress[keep]
    kept_first = np.searchsorted(user, np.arange(n_users))
    rank = np.arange(len(user)) - kept_first[user]
    keep = rank < lengths[user]
    user, item, progress = user[keep], item[keep], progress[keep]

    # Rating: affinity of the user's current taste for the item's genres (relative to uniform taste).
    genres_of = item_genres[item]  # (n_events, MAX_GENRES_PER_ITEM), -1 padded
    present = genres_of >= 0
    at = (user[:, None], np.maximum(genres_of, 0))
    current = (1 - progress)[:, None] * taste_start[at] + progress[:, None] * taste_end[at]
    affinity = np.where(present, current, 0.0).sum(1) / present.sum(1) * n_genres
    score = 7.5 + 1.2 * np.log(affinity + 0.1) + 0.6 * quality[item] + user_bias[user] + rng.normal(0, 1.1, len(user))
    rating = np.clip(np.rint(score), 1, 10).astype(np.int64)
    rating[rng.random(len(user)) < cfg.unrated_share] = -1

    # Timestamps: each user is active over a span inside [start, end]; progress maps onto it.
    t0 = int(pd.Timestamp(cfg.start, tz="UTC").timestamp())
    t1 = int(pd.Timestamp(cfg.end, tz="UTC").timestamp())
    span = rng.uniform(30 * 86400, (t1 - t0) * 0.6, n_users)
    begin = t0 + rng.uniform(0, 1, n_users) * (t1 - t0 - span)
    # Every user keeps at least their first candidate, so each has events; stretch so the last is at 1.
    last_progress = np.maximum.reduceat(progress, np.searchsorted(user, np.arange(n_users)))
    stretch = progress / np.repeat(last_progress, np.bincount(user, minlength=n_users))
    timestamp = (begin[user] + stretch * span[user]).astype(np.int64)

    # File order as in Kaggle's rating.csv: by user, then anime_id (so only the timestamps give time order).
    order = np.lexsort((anime_ids[item], user))
    ratings = pd.DataFrame({"user_id": user[order] + 1, "anime_id": anime_ids[item[order]],
                            "rating": rating[order], "timestamp": timestamp[order]})
    catalogue = _catalogue(rng, anime_ids, item_genres, item, rating)
    return SyntheticData(catalogue, ratings, taste_start, taste_end)


def _catalogue(rng, anime_ids, item_genres, item, rating) -> pd.DataFrame:
    n_items = len(anime_ids)
    names = np.array(GENRES + [""], dtype=object)[item_genres]  # -1 -> ""
    genre_text = pd.Series([", ".join(g for g in row if g) for row in names])
    types = rng.choice(TYPES, size=n_items, p=[0.35, 0.2, 0.2, 0.15, 0.07, 0.03])
    episodes = np.where(types == "TV", rng.choice([12, 13, 24, 26, 50], size=n_items), 1).astype(object)
    episodes[(types == "ONA") & (rng.random(n_items) < 0.3)] = "Unknown"
    rated = rating > 0
    sums = np.bincount(item[rated], weights=rating[rated], minlength=n_items)
    counts = np.bincount(item[rated], minlength=n_items)
    mean = np.where(counts > 0, np.round(sums / np.maximum(counts, 1), 2), np.nan)
    members = np.bincount(item, minlength=n_items) * 7 + rng.integers(0, 50, n_items)
    title = pd.Series([f"Synthetic Title {k}" for k in range(1, n_items + 1)])
    title[::97] = title[::97] + " &amp; Friends"  # a few HTML entities, as in the real catalogue
    return pd.DataFrame({"anime_id": anime_ids, "name": title, "genre": genre_text, "type": types,
                         "episodes": episodes.astype(str), "rating": mean, "members": members})


def write_synthetic(cfg: SyntheticConfig, folder) -> tuple[Path, Path]:
    """Generate and write ``anime.csv``, ``rating.csv`` and ``synthetic.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = generate(cfg)
    items_path, ratings_path = folder / "anime.csv", folder / "rating.csv"
    data.catalogue.to_csv(items_path, index=False)
    with open(ratings_path, "wb") as f:  # header unquoted, as in Kaggle's file (pyarrow would quote it)
        f.write((",".join(data.ratings.columns) + "\n").encode())
        pacsv.write_csv(pa.Table.from_pandas(data.ratings, preserve_index=False), f,
                        pacsv.WriteOptions(include_header=False, quoting_style="none"))
    (folder / SYNTHETIC_MARKER).write_text(json.dumps({"generator": "nostrade.synthetic", **asdict(cfg)},
                                                      indent=2) + "\n")
    return items_path, ratings_path
