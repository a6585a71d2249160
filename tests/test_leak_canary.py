"""The leak canary (EVAL.md: a target is never an event a model trained on, and every per-item statistic comes from
the training part): replace the title of every held-out event (each test event and, where the order is not time,
each held-out Dislike) with another title, refit with the same seed, and the fitted model's scores on the training
histories must be identical. Every model of the registry passes it, the ranker and SASRec included; the ranker
reading MovieLens's whole-file members / mean rating (what it did before) fails it.

MovieLens data goes through the real pipeline (raw ratings.csv -> nostrade.prep), so catalogue columns that prep
counts over the whole file change with the swapped titles, as they would with other held-out events.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from model_contract import one_torch_thread  # noqa: F401  (fixture)
from nostrade import prep
from nostrade.dataset import Dataset, load_dataset
from nostrade.registry import GENERATOR_MODELS, MODELS, make_model
from nostrade.ranker import FittedGenerators
from nostrade.split import split_of

N_USERS, N_MOVIES, PER_USER = 120, 40, 14
FAST = {"als": {"iterations": 2, "factors": 8}, "lightgcn": {"epochs": 2, "dim": 8},
        "gru4rec": {"epochs": 2, "dim": 8}, "ncf": {"epochs": 2},
        "sasrec": {"d_model": 16, "n_layers": 1, "max_len": 20, "epochs": 2, "warmup": 2, "patience": 2,
                   "num_threads": 1, "progress": False}}
RANKER = {"generators": ("sasrec", "als", "itemknn", "ease", "popularity"), "n_estimators": 10,
          "min_child_samples": 5}


def options_of(name: str) -> dict:
    """Small, fast options (the ranker's generators too: a fresh FittedGenerators, nothing shared between fits)."""
    return {**RANKER, "fit_generator": FittedGenerators(GENERATOR_MODELS, FAST)} if name == "ranker" else FAST.get(name, {})


def ratings(seed: int = 0) -> pd.DataFrame:
    """ML-latest ratings: every user rates PER_USER distinct movies at increasing times."""
    rng = np.random.default_rng(seed)
    movies = np.stack([rng.choice(N_MOVIES, PER_USER, replace=False) + 1 for _ in range(N_USERS)])
    return pd.DataFrame({"userId": np.repeat(np.arange(1, N_USERS + 1), PER_USER), "movieId": movies.ravel(),
                         "rating": rng.choice([1.0, 2.5, 3.5, 4.0, 5.0], movies.size),
                         "timestamp": 1_000_000_000 + np.arange(movies.size) * 60})


def prepared(frame: pd.DataFrame, folder) -> Dataset:
    raw = folder / "raw"
    raw.mkdir(parents=True)
    frame.to_csv(raw / "ratings.csv", index=False)
    pd.DataFrame({"movieId": np.arange(1, N_MOVIES + 1), "title": [f"Movie {m} (1999)" for m in range(N_MOVIES)],
                  "genres": [["Drama", "Comedy", "Action|Drama"][m % 3] for m in range(N_MOVIES)]}
                 ).to_csv(raw / "movies.csv", index=False)
    prep.run(prep.PrepConfig(source="movielens", ratings=raw, out=folder / "processed", artifacts=folder / "processed",
                             min_item_users=1))
    return load_dataset(folder / "processed")


def swap_test_titles(frame: pd.DataFrame, dataset: Dataset, seed: int = 1) -> pd.DataFrame:
    """The ratings with every test event's movie replaced by one the user has not rated (same rating, same time)."""
    test = split_of(dataset).test
    movie_of_iid = dataset.items["item_id"].to_numpy()
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for user_row, iid in zip(test.users, test.target):  # a few hundred rows of a test fixture: a loop is clearest
        user = dataset.user_ids[user_row]
        rated = set(frame.loc[frame["userId"] == user, "movieId"])
        event = (out["userId"] == user) & (out["movieId"] == movie_of_iid[iid - 1])
        out.loc[event, "movieId"] = rng.choice(sorted(set(range(1, N_MOVIES + 1)) - rated))
    return out


@pytest.fixture(scope="module")
def movielens_pair(tmp_path_factory):
    frame = ratings()
    original = prepared(frame, tmp_path_factory.mktemp("canary_original"))
    swapped = prepared(swap_test_titles(frame, original), tmp_path_factory.mktemp("canary_swapped"))
    return original, swapped


def order_free_pair(original: Dataset) -> tuple[Dataset, Dataset]:
    """The same data declared order-free, and a copy whose held-out events (test events and held-out Dislikes)
    point at other titles the user has not seen."""
    free = dataclasses.replace(original, meta={**original.meta, "order_is_time": False})
    split = split_of(free)
    seqs = free.sequences
    iid = seqs.iid.copy()
    for cases in (split.test, split.test_disliked):
        for user_row, target in zip(cases.users, cases.target):
            start, end = seqs.offsets[user_row], seqs.offsets[user_row + 1]
            unseen = np.setdiff1d(np.arange(1, free.n_items + 1), seqs.iid[start:end])
            iid[start + np.flatnonzero(seqs.iid[start:end] == target)[0]] = unseen[target % len(unseen)]
    return free, dataclasses.replace(free, sequences=dataclasses.replace(seqs, iid=iid))


def training_scores(name: str, dataset: Dataset, options: dict) -> torch.Tensor:
    split = split_of(dataset)
    model = make_model(name, seed=0, **options).fit(dataset, split.train)
    return model.score(split.train.take(split.valid.users))


def assert_same_training(a: Dataset, b: Dataset) -> None:
    sa, sb = split_of(a), split_of(b)
    assert (sa.train.iid == sb.train.iid).all() and (sa.train.feedback == sb.train.feedback).all()
    assert (sa.valid.target == sb.valid.target).all() and not (sa.test.target == sb.test.target).all()


def test_the_swap_changes_only_held_out_events(movielens_pair):
    original, swapped = movielens_pair
    assert original.iid_map_hash == swapped.iid_map_hash
    assert_same_training(original, swapped)
    assert not original.items["members"].equals(swapped.items["members"])  # prep counts the whole file


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_scores_training_histories_without_the_held_out_events(name, movielens_pair, one_torch_thread):
    original, swapped = movielens_pair
    assert torch.equal(training_scores(name, original, options_of(name)), training_scores(name, swapped, options_of(name)))


@pytest.mark.parametrize("name", ["ease", "sasrec", "ranker"])
def test_order_free_held_out_dislikes_are_not_trained_on(name, movielens_pair, one_torch_thread):
    free, swapped = order_free_pair(movielens_pair[0])
    assert len(split_of(free).test_disliked) > 0
    assert_same_training(free, swapped)
    assert torch.equal(training_scores(name, free, options_of(name)), training_scores(name, swapped, options_of(name)))


def test_the_canary_catches_the_ranker_reading_whole_file_counts(movielens_pair, monkeypatch, one_torch_thread):
    monkeypatch.setattr(Dataset, "rating_derived_columns", property(lambda self: ()))  # what the ranker did before
    original, swapped = movielens_pair
    assert not torch.equal(training_scores("ranker", original, options_of("ranker")),
                           training_scores("ranker", swapped, options_of("ranker")))
