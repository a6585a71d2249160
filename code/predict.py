"""Serving backend: a trained model meets a person's history — score, genre-blend, filter, explain.

The model is a checkpoint's (nostrade.checkpoint): the default is nostrade.train --model auto's choice by served
validation (EASE, the two-stage ranker or SASRec), or one kind forced (--model ease / ranker / sasrec); anything with
the small nostrade.checkpoint.ServedModel protocol serves the same way.

The Streamlit app (code/app.py) and the HTTP service (code/api.py) call this module and re-implement
nothing. Public API:

    from predict import Recommender, Event

    rec = Recommender.load("checkpoints/model.pt", "data/processed",
                           catalogue_path="data/sample/anime.csv.gz")   # load once, reuse
    out = rec.recommend([Event(20, "Love"), Event(1735, 2), Event(30, "Dislike", timestamp=1.7e9)],
                        k=20, alpha=0.2, genres=["Action"], types=["TV"], min_members=10_000,
                        exclude_genres=["Kids"], exclude_ids=[1535],   # optional: left out
                        genre_only_min_members=rec.model_min_members)  # optional: floor of genre-only picks
    out.items          # DataFrame: rank, item_id, name, genres, type, members, in_model, from_features, score,
                       #   model_score, genre_score, popularity_score, dislike_penalty, rank_without_dislikes,
                       #   pushed_down_by (the disliked title that lowered it, or None), source,
                       #   retrieved_by (a ranker's generators that found it, in words; else []), reason
    out.path           # "sequence+genre" | "genre+popularity" (cold start) | "popularity" (cold start)
    out.cold_start     # True unless path == "sequence+genre"
    out.unknown_ids    # item ids not in the catalogue: skipped
    out.content_only_ids  # catalogue titles the model does not know: counted through genres only
    out.n_duplicates, out.n_truncated  # events replaced by a later one / older than the model's window
    out.explanations   # DataFrame, one row per (recommendation, named pick): item_id, pick_item_id,
                       #   pick_name, pick_feedback, similarity (item-space cosine, NaN outside the model),
                       #   genre_similarity, shared_genres, co_watched, co_loved
    out.graph          # networkx.DiGraph pick -> recommendation, edge "weight" = similarity
    out.to_csv("top20.csv"); out.to_dict()  # export (atomic file write) / JSON-ready dict

    rec.similar(item_id, k=10, use_faiss=False)   # item-to-item; DataFrame with similarity, source
    rec.popular(k=20, genres=None, types=None, min_members=None, exclude_genres=None, exclude_ids=None)
    rec.search("shingeki", limit=10)               # typo-tolerant title search (rapidfuzz; first 200 characters)
    rec.lookup([20, 1735])                         # catalogue rows for item ids
    rec.recommend_batch(histories, k=20, alpha=0.2)  # offline: long DataFrame user, rank, item_id, score
    rec.scores(histories, alpha=0.2)               # every catalogue title's scores as NumPy arrays (Scores)
    rec.genres, rec.types                          # values the filters accept
    rec.describe()                                 # sizes, model kind and config, data hash (for a health check)
    use_threads(1)                                 # CPU threads for PyTorch and NumPy's BLAS (per process)
    rec.catalogue                                  # DataFrame of every title (model's titles first, iid order)
    Recommender(model, dataset, catalogue=None)  # tests and benchmarks, no files (model: a ServedModel)

``Recommender.load`` checks the checkpoint's iid-map hash and item count against the processed folder's
meta.json and its iid_map.json (CheckpointMismatch / ValueError with the reason), and refuses a damaged file
(CheckpointError naming it: checksum, NaN / inf weights, not a checkpoint); the catalogue defaults
to the anime file the data was prepared from (if unchanged), else the model's own titles. Loading
precomputes everything a request needs (unit item vectors, the genre matrix, log popularity, sparse
co-watch matrices, normalised titles for search); a request only reads them, so one Recommender can
serve concurrent threads. ``out.items``, ``out.explanations`` and ``out.graph`` are built on first access.

Events: ``Event(item_id, feedback=LIKE, timestamp=None)``, or a plain tuple in that order, or a dict
with those keys. Feedback is 1/2/3 or "Dislike"/"Like"/"Love" (any case). Rules:
- order: by timestamp (stable) when every event has one, else the order given (oldest first);
- duplicates of an item id: the latest wins (its feedback and its place in the order);
- item ids missing from the catalogue are skipped and listed in ``unknown_ids``; catalogue titles the
  model does not know count through the genre profile and are listed in ``content_only_ids``;
- order: for a model of data whose order is not time (EASE, or a set-model SASRec, ``permutations`` > 0) the
  order given does not matter: the same set of rated titles gets the same answer;
- the model scores the most recent ``max_len`` events (its ``window``: a sequence model's maximum; None for
  EASE and a set model: all of them); every event is "seen";
- bad input raises ValueError with a one-line message: feedback outside 1..3 or another name, a
  non-integer item id, a non-finite timestamp, k outside 1..MAX_K (500), alpha outside [0, 1], unknown
  genre/type filter values, negative min_members; ``similar`` of an id outside the catalogue raises
  UnknownTitle (a LookupError).

Scoring, for every catalogue title the person has not seen (see nostrade.blend for the normalisation):
- "sequence+genre" (at least COLD_START_MIN_EVENTS (1) event the model knows):
  ``final = (1 - α)·minmax(model score) + α·minmax(genre cosine) - dislike penalty``. Titles outside the
  model's vocabulary get model part 0, so they surface only through genres (or with α = 1) — except with a SASRec
  trained with item features, which scores every catalogue title, those outside its vocabulary from their side
  features alone (``from_features`` true in ``out.items``).
- "genre+popularity" (cold start: only titles the model
  does not know): ``(1 - LOG_MEMBERS_WEIGHT)·minmax(genre cosine) + LOG_MEMBERS_WEIGHT·minmax(log members)``.
- "popularity" (cold start: no usable event): ``minmax(log members)``.
The genre cosine is between each title's genre vector and the person's profile: the sum of their
events' unit genre vectors weighted Love +2, Like +1, Dislike -1.

Dislikes steer away, whatever the model learned (plain SASRec is known to rank disliked items and their
neighbours *higher*: a Transformer's last hidden state resembles its last input; EASE counts a dislike as
a watch): (1) the model sees the dislikes, but a dislike may only lower a title's model score: where
the history has dislikes, the model part is the lower of the normalised scores with and without them
(one extra row in the same model call); (2) the dislike penalty,
``dislike_weight · max(0, max cosine to a disliked title in the model's item space)``, is subtracted from
the final score. Filters restrict the candidates after normalisation, before top-K, so a filtered list
keeps the order of the unfiltered one (``genres``: a title with any of them passes; ``exclude_genres``: a title
with any of them fails). ``genre_only_min_members`` (default None: no floor) drops titles with fewer members
where genres alone rank them: α = 1, a cold-start path, or a title outside the model's vocabulary.

Each recommendation's ``source`` is the part that contributed more to its score ("sequence", "genre"
or "popularity"); ``retrieved_by``, where the model is a two-stage ranker (nostrade.ranker, from
``python -m nostrade.train --model ranker``), the generators that retrieved it, in words ("from people like
you", "next in your sequence" or for order-free data "fits your set of titles", "similar genres", "popular":
nostrade.explain.retrieval_phrases), also added to its reason; its ``reason`` is its own explanation ("Because you loved Naruto · 1,204 people watched
both · both Action, Shounen": its closest clearly similar pick, see nostrade.explain), else the genres it
shares with the liked titles, else its popularity; where the dislike penalty cost it places, the reason
says so and names the disliked title it resembles ("ranked #7, #4 without the penalty for resembling Bleach,
which you disliked").
"""
from __future__ import annotations

import math
import operator
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from rapidfuzz import fuzz, process, utils
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from nostrade.atomic import atomic_write
from nostrade.checkpoint import ServedModel, readable_config
from nostrade.dataset import Dataset, load_dataset, sha256_of
from nostrade.explain import (EXPLANATION_COLUMNS, Explainer, co_watch_matrices, influence_graph, pushed_down_note,
                              reasons, retrieval_note, retrieval_phrases, similarity_floor)
from nostrade.prep import REPO_ROOT, time_bins_of
from nostrade.registry import load_checkpoint
from nostrade.scoring import (DISLIKE_WEIGHT, LOG_MEMBERS_WEIGHT, PATH_CONTENT, PATH_POPULARITY, PATH_SEQUENCE,
                              SERVED_ALPHA, CatalogueHistory, Scores, Scoring)
from nostrade.sequences import DISLIKE, FEEDBACK_NAMES, LIKE
from nostrade.sources import load_anime_catalogue

MAX_K = 500
MAX_SEARCH_RESULTS = 100
MAX_QUERY_CHARS = 200  # search cost grows with the query's length; no title is this long
DENSE_LOOKUP_MAX_ID = 10_000_000
FEEDBACK_CODES = {name.lower(): code for code, name in FEEDBACK_NAMES.items()}
ITEM_COLUMNS = ["rank", "item_id", "name", "genres", "type", "members", "in_model", "from_features", "score",
                "model_score", "genre_score", "popularity_score", "dislike_penalty", "rank_without_dislikes",
                "pushed_down_by", "source", "retrieved_by", "reason"]


class Event(NamedTuple):
    item_id: int
    feedback: int | str = LIKE
    timestamp: float | None = None


class UnknownTitle(LookupError):
    """An item id that is not in the catalogue (where one is required, e.g. ``similar``)."""


def use_threads(n: int) -> None:
    """Serve with ``n`` CPU threads: PyTorch's intra-op pool (the model) and the BLAS under NumPy (the
    catalogue-wide products). One per process suits millisecond requests: more only add overhead."""
    torch.set_num_threads(n)
    threadpool_limits(n, user_api="blas")


# ---------------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------------
def feedback_code(value, where: str = "feedback") -> int:
    """1/2/3 or 'Dislike'/'Like'/'Love' (any case) -> 1/2/3; anything else -> ValueError."""
    if isinstance(value, str):
        code = FEEDBACK_CODES.get(value.strip().lower())
    elif isinstance(value, bool):
        code = None
    else:
        try:
            code = operator.index(value)
        except TypeError:
            code = None
    if code not in FEEDBACK_NAMES:
        raise ValueError(f"{where}: {value!r} is not one of 1 (Dislike), 2 (Like), 3 (Love) or those names")
    return code


def parse_events(events: Iterable) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate events -> (item_id int64, feedback int64, timestamp float64 or None if any is missing).

    An event is an Event / tuple / list ``(item_id[, feedback[, timestamp]])``, a dict with those keys,
    or a bare item id (a Like). The common case (plain ints, no timestamp) takes the fast checks."""
    ids, codes, stamps = [], [], []
    for n, event in enumerate(events):
        if isinstance(event, (tuple, list)):
            if not 1 <= len(event) <= 3:
                raise ValueError(f"event {n}: expected (item_id, feedback, timestamp), got {event!r}")
            item_id = event[0]
            feedback = event[1] if len(event) > 1 else LIKE
            timestamp = event[2] if len(event) > 2 else None
        elif isinstance(event, Mapping):
            if "item_id" not in event:
                raise ValueError(f"event {n}: no item_id in {dict(event)!r}")
            item_id, feedback, timestamp = event["item_id"], event.get("feedback", LIKE), event.get("timestamp")
        else:
            item_id, feedback, timestamp = event, LIKE, None
        if type(item_id) is not int:
            if isinstance(item_id, bool) or not hasattr(item_id, "__index__"):
                raise ValueError(f"event {n}: item_id {item_id!r} is not an integer")
            item_id = operator.index(item_id)
        if not -2**63 <= item_id < 2**63:
            raise ValueError(f"event {n}: item_id {item_id} is out of the 64-bit range")
        ids.append(item_id)
        codes.append(feedback if type(feedback) is int and 1 <= feedback <= 3
                     else feedback_code(feedback, f"event {n} feedback"))
        if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, (int, float, np.number))
                                      or not math.isfinite(timestamp)):
            raise ValueError(f"event {n}: timestamp {timestamp!r} is not a finite number")
        stamps.append(timestamp)
    has_time = bool(stamps) and all(t is not None for t in stamps)
    return (np.array(ids, dtype=np.int64), np.array(codes, dtype=np.int64),
            np.array(stamps, dtype=np.float64) if has_time else None)


def check_k(k, cap: int = MAX_K, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= cap:
        raise ValueError(f"{name}: {k!r} is not an integer in 1..{cap}")
    return int(k)


def check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: {alpha!r} is not a number in [0, 1]")
    return float(alpha)


# ---------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------
@dataclass
class Recommendations:
    """One ``recommend`` answer. ``items``, ``explanations`` and ``graph`` are built from the computed
    columns on first access (pandas construction is most of a request's cost: the HTTP service's
    ``to_dict`` never needs it)."""
    path: str
    alpha: float
    unknown_ids: list[int]
    content_only_ids: list[int]
    n_duplicates: int
    n_truncated: int
    item_columns: dict = field(repr=False)
    explanation_columns: dict = field(repr=False)

    @cached_property
    def items(self) -> pd.DataFrame:
        return pd.DataFrame(self.item_columns, columns=ITEM_COLUMNS)

    @cached_property
    def explanations(self) -> pd.DataFrame:
        return pd.DataFrame(self.explanation_columns, columns=EXPLANATION_COLUMNS)

    @cached_property
    def graph(self):
        """networkx.DiGraph pick -> recommendation (see nostrade.explain.influence_graph)."""
        return influence_graph(self.item_columns, self.explanation_columns)

    @property
    def cold_start(self) -> bool:
        return self.path != PATH_SEQUENCE

    def to_csv(self, path_or_buffer=None, **kwargs):
        """Top-K with explanations as CSV: written atomically to a path, or to a buffer, or returned as text.

        One row per recommendation; its named picks joined with " | " in ``because``,
        ``because_similarity`` and ``because_co_loved``."""
        table = self.items.assign(genres=self.items["genres"].map(", ".join),
                                  retrieved_by=self.items["retrieved_by"].map(" + ".join), path=self.path)
        if len(self.explanations):
            grouped = self.explanations.groupby("item_id", sort=False)
            joined = {
                "because": grouped["pick_name"].agg(" | ".join),
                "because_similarity": grouped["similarity"].agg(lambda v: " | ".join(f"{x:.3f}" for x in v)),
                "because_co_loved": grouped["co_loved"].agg(lambda v: " | ".join(map(str, v))),
            }
            for name, values in joined.items():
                table[name] = table["item_id"].map(values).fillna("")
        if path_or_buffer is None or not isinstance(path_or_buffer, (str, os.PathLike)):
            return table.to_csv(path_or_buffer, index=False, **kwargs)
        with atomic_write(path_or_buffer, "w", newline="") as f:
            table.to_csv(f, index=False, **kwargs)
        return None

    def to_dict(self) -> dict:
        """JSON-ready (NaN -> None): the result's fields and ``items``, each with its ``explanations`` list."""
        explained = {c: _plain(self.explanation_columns[c]) for c in EXPLANATION_COLUMNS}
        by_item: dict[int, list] = {}
        for entry in zip(*(explained[c] for c in EXPLANATION_COLUMNS)):
            by_item.setdefault(entry[0], []).append(dict(zip(EXPLANATION_COLUMNS[1:], entry[1:])))
        listed = {c: _plain(self.item_columns[c]) for c in ITEM_COLUMNS}
        items = [dict(zip(ITEM_COLUMNS, row)) for row in zip(*(listed[c] for c in ITEM_COLUMNS))]
        for item in items:
            item["explanations"] = by_item.get(item["item_id"], [])
        return {"path": self.path, "cold_start": self.cold_start, "alpha": self.alpha,
                "unknown_ids": list(self.unknown_ids), "content_only_ids": list(self.content_only_ids),
                "n_duplicates": self.n_duplicates, "n_truncated": self.n_truncated, "items": items}


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest entries of a vector, or of each row of a matrix (k capped at its length),
    best first; equal scores among those returned come in position order."""
    rows = np.atleast_2d(scores)
    k = min(k, rows.shape[1])
    part = np.argpartition(-rows, k - 1, axis=1)[:, :k] if 0 < k < rows.shape[1] else \
        np.broadcast_to(np.arange(k), (len(rows), k))
    order = np.lexsort((part, -np.take_along_axis(rows, part, axis=1)), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    return top if scores.ndim == 2 else top[0]


def _plain(values) -> list:
    """A column (numpy array or list) -> a list of JSON-friendly Python values (NaN -> None)."""
    if not isinstance(values, np.ndarray):
        return list(values)  # lists built here hold plain values already (e.g. shared_genres)
    out = values.tolist()  # numpy scalars -> Python scalars; object columns hold str / list / None / float
    if values.dtype.kind == "f":
        for i in np.flatnonzero(np.isnan(values)):
            out[i] = None
    elif values.dtype.kind == "O":
        out = [None if isinstance(v, float) and v != v else v for v in out]  # v != v: NaN (pd.isna is slow here)
    return out


# ---------------------------------------------------------------------------------------------------
# The recommender
# ---------------------------------------------------------------------------------------------------
class Recommender:
    """A model, its vocabulary, the catalogue and everything precomputed for millisecond requests."""

    def __init__(self, model: ServedModel, dataset: Dataset, catalogue: pd.DataFrame | None = None,
                 dislike_weight: float = DISLIKE_WEIGHT, alpha: float = SERVED_ALPHA):
        self.model = model.cpu().eval() if isinstance(model, torch.nn.Module) else model
        self.max_len = model.window  # the most recent events scored (None: all)
        self.dataset = dataset
        self.meta = dataset.meta
        self.dislike_weight = float(dislike_weight)
        self.default_alpha = check_alpha(alpha)  # what recommend() blends at unless told (chosen on validation)
        n_model_items = model.config()["n_items"]
        if n_model_items != dataset.n_items:
            raise ValueError(f"model has {n_model_items} items but the data set has {dataset.n_items}")
        # Catalogue rows: the model's titles first, in iid order (row = iid - 1), then the others in the
        # order given, so that model scores land on the catalogue as one contiguous slice.
        self.catalogue = _checked_catalogue(dataset.items if catalogue is None else catalogue, dataset.items)
        self.n_items = dataset.n_items
        cat = self.catalogue
        self._item_ids = cat["item_id"].to_numpy(dtype=np.int64)
        self._row_index = pd.Index(self._item_ids)
        if self._item_ids.min() >= 0 and self._item_ids.max() < DENSE_LOOKUP_MAX_ID:  # a plain array is faster
            self._row_table = np.full(self._item_ids.max() + 1, -1, dtype=np.int64)
            self._row_table[self._item_ids] = np.arange(len(cat))
        else:
            self._row_table = None
        self.iid_of_row = np.zeros(len(cat), dtype=np.int64)
        self.iid_of_row[:self.n_items] = np.arange(1, self.n_items + 1)
        self.row_of_iid = np.arange(-1, self.n_items, dtype=np.int64)  # row_of_iid[0] (padding) unused
        self._in_model = self.iid_of_row > 0

        self._members = cat["members"].astype("Float64").fillna(0).to_numpy(dtype=np.float64)
        self.scoring = Scoring.over(self.model, cat, self.n_items, dislike_weight)
        # titles the model scores: its vocabulary, or every title where it scores them from their features
        self._model_scored = np.arange(len(cat)) < self.scoring.n_scored
        genre_unit = self.scoring.genre_unit
        self.genres = self.scoring.genre_names
        self._genre_hot = genre_unit > 0
        self.types = sorted(cat["type"].dropna().unique().tolist())
        self._type = cat["type"].to_numpy(dtype=object)
        self._item_unit = self.scoring.item_unit
        watched, loved = co_watch_matrices(dataset.sequences, dataset.n_items)
        self._names = cat["name"].to_numpy(dtype=object)
        self._genre_lists = cat["genres"].to_numpy(dtype=object)
        self.explainer = Explainer(self._item_unit, genre_unit, np.array(self.genres, dtype=object),
                                   self.iid_of_row, cat["item_id"].to_numpy(), self._names, watched, loved,
                                   similarity_floor(self._item_unit[1:]), similarity_floor(genre_unit))
        # the default popularity floor of genre-only picks: as popular as the least popular title the model knows
        self.model_min_members = int(self._members[:self.n_items].min()) if self.n_items else 0
        self._search_names = [utils.default_process(n) for n in cat["name"]]
        self._search_lengths = np.array([len(n) for n in self._search_names])
        words = [name.split() or [""] for name in self._search_names]  # each title's words, flat, and where each starts
        self._search_words = [w for ws in words for w in ws]
        self._search_word_starts = np.cumsum([0] + [len(ws) for ws in words[:-1]])
        self._faiss = None

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def load(cls, checkpoint_path, processed_dir, catalogue_path=None, iid_map_path=None,
             **kwargs) -> "Recommender":
        """Load a checkpoint against a processed folder; fail clearly on any vocabulary mismatch.

        The checkpoint's iid-map hash and item count must match the folder's meta.json; the folder's
        iid_map.json (and ``iid_map_path``, e.g. artifacts/iid_map.json, if given) must hash to that value
        and agree with items.parquet. ``catalogue_path``: the full catalogue (e.g.
        data/sample/anime.csv.gz); by default the anime catalogue file recorded in meta.json if it is
        still there unchanged, else only the model's own titles (items.parquet).
        """
        dataset = load_dataset(processed_dir)
        folder_map = Path(processed_dir) / "iid_map.json"
        for iid_map in ([folder_map] if folder_map.exists() else []) + ([Path(iid_map_path)] if iid_map_path else []):
            _check_iid_map(iid_map, dataset)
        checkpoint = load_checkpoint(checkpoint_path, expected_iid_map_sha256=dataset.iid_map_hash,
                                     expected_n_items=dataset.n_items)
        catalogue_path = catalogue_path or default_catalogue_path(dataset.meta)
        catalogue = None if catalogue_path is None else load_catalogue(catalogue_path)
        served = checkpoint.metrics.get("served") or {}  # the settings chosen on validation at training time
        return cls(checkpoint.model, dataset, catalogue, **{**served, **kwargs})

    def describe(self) -> dict:
        """What is being served (JSON-ready): sizes, the model's config, the data it was trained on."""
        return {"catalogue_items": len(self.catalogue), "model_items": self.n_items, "max_len": self.max_len,
                "max_k": MAX_K, "genres": self.genres, "types": self.types, "source": self.meta.get("source"),
                "iid_map_sha256": self.meta.get("iid_map_sha256"), "has_timestamps": self.meta.get("has_timestamps"),
                "model": {"kind": self.model.kind, **readable_config(self.model)}, "dislike_weight": self.dislike_weight,
                "alpha": self.default_alpha}

    # -- history preparation ----------------------------------------------------------------------
    def history(self, events: Iterable) -> CatalogueHistory:
        item_ids, feedback, timestamps = parse_events(events)
        if timestamps is not None:
            order = np.argsort(timestamps, kind="stable")
            item_ids, feedback, timestamps = item_ids[order], feedback[order], timestamps[order]
        _, last_from_end = np.unique(item_ids[::-1], return_index=True)
        keep = np.sort(len(item_ids) - 1 - last_from_end)
        n_duplicates = len(item_ids) - len(keep)
        item_ids, feedback = item_ids[keep], feedback[keep]
        timestamps = None if timestamps is None else timestamps[keep]
        rows = self.rows_of(item_ids)
        known = rows >= 0
        unknown_ids = item_ids[~known].tolist()
        rows, feedback = rows[known], feedback[known]
        timestamps = None if timestamps is None else timestamps[known]
        seen_rows = rows
        n_truncated = max(0, len(rows) - self.max_len) if self.max_len else 0
        if n_truncated:
            rows, feedback = rows[n_truncated:], feedback[n_truncated:]
            timestamps = None if timestamps is None else timestamps[n_truncated:]
        iid = self.iid_of_row[rows]
        content_only = self._item_ids[rows[iid == 0]].tolist()
        return CatalogueHistory(rows.astype(np.int64), feedback, self._time_bins(timestamps, len(rows)), iid,
                       seen_rows.astype(np.int64), tuple(unknown_ids), tuple(content_only), n_duplicates, n_truncated)

    def rows_of(self, item_ids: np.ndarray) -> np.ndarray:
        """Catalogue row of each item id, -1 where it is not in the catalogue."""
        if self._row_table is None:
            return self._row_index.get_indexer(item_ids)
        inside = (item_ids >= 0) & (item_ids < len(self._row_table))
        return np.where(inside, self._row_table[np.where(inside, item_ids, 0)], -1)

    def _time_bins(self, timestamps: np.ndarray | None, n: int) -> np.ndarray:
        """Model time bins of the events, by the data's own scheme (nostrade.prep.time_bins_of); events without
        a timestamp count as the most recent bin (they happen now)."""
        info = self.meta.get("time_bins", {})
        if timestamps is None:
            return np.full(n, int(info.get("n_bins", 1)), dtype=np.int64)
        return time_bins_of(timestamps, info)

    # -- scoring ------------------------------------------------------------------------------------
    def scores(self, histories: Sequence, alpha: float | None = None) -> Scores:
        """Scores of every catalogue title for each history (a CatalogueHistory or a list of events): nostrade.scoring."""
        alpha = self.default_alpha if alpha is None else check_alpha(alpha)
        return self.scoring.scores([h if isinstance(h, CatalogueHistory) else self.history(h) for h in histories], alpha)

    def filter_mask(self, genres=None, types=None, min_members=None, exclude_genres=None,
                    exclude_ids=None) -> np.ndarray:
        """(C,) bool of the titles that pass the filters: a title passes ``genres`` with any one of them,
        ``exclude_genres`` with none of them; ``exclude_ids``: item ids left out (e.g. already on the page)."""
        keep = np.ones(len(self.catalogue), dtype=bool)
        if genres:
            keep &= self._genre_hot[:, self._genre_columns(genres, "genres")].any(axis=1)
        if exclude_genres:
            keep &= ~self._genre_hot[:, self._genre_columns(exclude_genres, "exclude_genres")].any(axis=1)
        if exclude_ids is not None and len(exclude_ids):
            rows = self.rows_of(np.asarray(list(exclude_ids), dtype=np.int64))
            keep[rows[rows >= 0]] = False
        if types:
            types = [types] if isinstance(types, str) else list(types)
            unknown = sorted(set(types) - set(self.types))
            if unknown:
                raise ValueError(f"types: {unknown} not in the catalogue's types {self.types}")
            keep &= pd.Series(self._type).isin(types).to_numpy()
        if min_members is not None:
            if isinstance(min_members, bool) or not isinstance(min_members, (int, np.integer)) or min_members < 0:
                raise ValueError(f"min_members: {min_members!r} is not a non-negative integer")
            keep &= self._members >= min_members
        return keep

    def _genre_columns(self, genres, name: str) -> list[int]:
        genres = [genres] if isinstance(genres, str) else list(genres)
        unknown = sorted(set(genres) - set(self.genres))
        if unknown:
            raise ValueError(f"{name}: {unknown} not in the catalogue's genres {self.genres}")
        return [self.genres.index(g) for g in genres]

    # -- the main call --------------------------------------------------------------------------------
    def recommend(self, events: Iterable = (), k: int = 20, alpha: float | None = None, genres=None, types=None,
                  min_members=None, explain: bool = True, exclude_genres=None, exclude_ids=None,
                  genre_only_min_members=None, scored: Scores | None = None) -> Recommendations:
        """Top-k of the titles that pass the filters (``filter_mask``); ``genre_only_min_members``: the members a
        title needs when genres alone rank it (no model part in its score: α = 1, a cold start, or a title the
        model does not know), so that a genre match cannot surface a title almost nobody watched. ``events``
        may be a CatalogueHistory already (``history``); ``scored``: its one row of ``scores`` with this alpha where the
        caller scored it already, e.g. in one call with other requests (the API's micro-batching)."""
        k, alpha = check_k(k), self.default_alpha if alpha is None else check_alpha(alpha)
        allowed = self.filter_mask(genres, types, min_members, exclude_genres, exclude_ids)
        history = events if isinstance(events, CatalogueHistory) else self.history(events)
        s = self.scores([history], alpha) if scored is None else scored
        allowed &= s.candidates[0]
        path = s.paths[0]
        if genre_only_min_members is not None and path != PATH_POPULARITY:
            floor = self.filter_mask(min_members=genre_only_min_members)
            allowed &= floor | (self._model_scored & (path == PATH_SEQUENCE) & (alpha < 1.0))
        top = top_k(np.where(allowed, s.final[0], -np.inf), min(k, int(allowed.sum())))
        model, genre, pop = (t[0, top] for t in (s.model, s.genre, s.log_members))
        if path == PATH_SEQUENCE:
            by_model = self._model_scored[top] & ((1 - alpha) * model >= alpha * genre)
            source = np.where(by_model, "sequence", "genre")
        elif path == PATH_CONTENT:
            by_model = np.zeros(len(top), dtype=bool)
            source = np.where((1 - LOG_MEMBERS_WEIGHT) * genre >= LOG_MEMBERS_WEIGHT * pop, "genre", "popularity")
        else:
            by_model = np.zeros(len(top), dtype=bool)
            source = np.full(len(top), "popularity")
        columns = {
            "rank": np.arange(1, len(top) + 1),
            "item_id": self._item_ids[top],
            "name": self._names[top],
            "genres": self._genre_lists[top],
            "type": self._type[top],
            "members": self._members[top].astype(np.int64),
            "in_model": self._in_model[top],
            "from_features": self._model_scored[top] & ~self._in_model[top],
            "score": s.final[0, top],
            "model_score": np.where(self._model_scored[top] & (path == PATH_SEQUENCE), model, np.nan),
            "genre_score": genre,
            "popularity_score": pop,
            "dislike_penalty": s.penalty[0, top],
            **self._pushed_down(s, allowed, top, history),
            "source": source,
            "retrieved_by": retrieval_phrases(s.retrieved[0, top], self.scoring.retrieval_names,
                                              self.dataset.order_is_time),
        }
        if explain:
            picks = history.feedback != DISLIKE
            found = self.explainer.explain(top, by_model, history.rows[picks], history.feedback[picks])
            columns["reason"] = self._reasons(top, source, reasons(found, len(top), by_model), history.rows[picks], columns)
            del found["rec"]
        else:
            columns["reason"] = np.full(len(top), "", dtype=object)
            found = {c: [] for c in EXPLANATION_COLUMNS}
        return Recommendations(path, alpha, list(history.unknown_ids), list(history.content_only_ids), history.n_duplicates,
                               history.n_truncated, columns, found)

    def _pushed_down(self, s: Scores, allowed: np.ndarray, top: np.ndarray, history: CatalogueHistory) -> dict:
        """Per recommendation: its rank among the allowed titles were the dislike penalty not subtracted, and,
        where that rank is better, the disliked title it resembles most (the one that set its penalty)."""
        rank_without = np.arange(1, len(top) + 1)
        pushed_by = np.full(len(top), None, dtype=object)
        if len(top) and s.penalty[0, top].any():
            unpenalised = (s.final[0] + s.penalty[0])[allowed]
            mine = s.final[0, top] + s.penalty[0, top]
            above = unpenalised[unpenalised > mine.min()]  # the only titles that can rank above any of them
            rank_without = 1 + (above[None, :] > mine[:, None]).sum(axis=1)
            pushed = (rank_without < np.arange(1, len(top) + 1)) & (s.penalty[0, top] > 0)
            if pushed.any():
                disliked = history.rows[history.feedback == DISLIKE]
                nearest, _ = self.explainer.closest(top[pushed], disliked)
                pushed_by[pushed] = self._names[disliked[nearest]]
        return {"rank_without_dislikes": rank_without.astype(np.int64), "pushed_down_by": pushed_by}

    def _reasons(self, top: np.ndarray, source: np.ndarray, because: list, liked_rows: np.ndarray,
                 columns: dict) -> list[str]:
        """The recommendation's own explanation (nostrade.explain.reasons) where a pick is clearly similar; else what
        did the work: the model (co-watching), the genres it shares with liked titles, or its popularity; and what
        a Dislike did to it, if anything."""
        shared = self._genre_hot[top] & self._genre_hot[liked_rows].any(axis=0)
        out = []
        for r, (src, sentence) in enumerate(zip(source.tolist(), because)):
            # the shared genres are read only where no pick is named (most recommendations name one)
            genres = "" if sentence is not None else ", ".join(self.genres[j] for j in np.flatnonzero(shared[r])[:3])
            if sentence is None and src == "sequence":  # the model, from what people who watched your titles watched
                sentence = "Often watched by fans of your titles" + (f" · {genres}" if genres else "")
            elif sentence is None and src != "popularity" and genres:
                sentence = "Matches genres you like: " + genres
            elif sentence is None:
                sentence = f"Popular: {int(self._members[top[r]]):,} members"
            if columns["retrieved_by"][r]:
                sentence += " · " + retrieval_note(columns["retrieved_by"][r])
            if columns["pushed_down_by"][r] is not None:
                sentence += " · " + pushed_down_note(r + 1, int(columns["rank_without_dislikes"][r]),
                                                     columns["pushed_down_by"][r])
            out.append(sentence)
        return out

    # -- other entry points ----------------------------------------------------------------------------
    def popular(self, k: int = 20, genres=None, types=None, min_members=None, exclude_genres=None,
                exclude_ids=None) -> pd.DataFrame:
        return self.recommend((), k=k, genres=genres, types=types, min_members=min_members,
                              exclude_genres=exclude_genres, exclude_ids=exclude_ids).items

    def recommend_batch(self, histories: Sequence, k: int = 20, alpha: float | None = None, batch_size: int = 256,
                        progress: bool = False) -> pd.DataFrame:
        """Top-k for many histories at once (offline scoring, no explanations).

        Returns a long DataFrame: user (index into ``histories``), rank, item_id, score, path.
        """
        alpha = self.default_alpha if alpha is None else check_alpha(alpha)
        k, batch_size = check_k(k), check_k(batch_size, 1 << 20, "batch_size")
        parts = []
        starts = range(0, len(histories), batch_size)
        for start in tqdm(starts, disable=not progress, desc="scoring", unit="batch"):
            s = self.scores(histories[start:start + batch_size], alpha)
            ranked = np.where(s.candidates, s.final, -np.inf)
            top = top_k(ranked, k)
            values = np.take_along_axis(ranked, top, axis=1)
            found = np.isfinite(values)  # fewer than k unseen titles: the rest is -inf
            n, kk = found.shape
            parts.append(pd.DataFrame({
                "user": np.repeat(np.arange(start, start + n), kk)[found.ravel()],
                "rank": np.tile(np.arange(1, kk + 1), n)[found.ravel()],
                "item_id": self._item_ids[top[found]],
                "score": values[found],
                "path": np.repeat(s.paths, kk)[found.ravel()],
            }))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            columns=["user", "rank", "item_id", "score", "path"])

    def lookup(self, item_ids) -> pd.DataFrame:
        """Catalogue rows (with ``in_model``) for item ids, in the order given; unknown ids are left out."""
        rows = self.rows_of(np.asarray(list(item_ids), dtype=np.int64))
        rows = rows[rows >= 0]
        return self.catalogue.iloc[rows].assign(in_model=self._in_model[rows]).reset_index(drop=True)

    def similar(self, item_id: int, k: int = 10, use_faiss: bool = False) -> pd.DataFrame:
        """Titles most similar to one title: cosine in the model's item space (exact, or an
        approximate FAISS HNSW index for large catalogues); genre cosine for titles the model does not know."""
        k = check_k(k)
        valid = isinstance(item_id, (int, np.integer)) and not isinstance(item_id, bool)
        row = int(self.rows_of(np.array([item_id], dtype=np.int64))[0]) if valid else -1
        if row < 0:
            raise UnknownTitle(f"item_id {item_id!r} is not in the catalogue")
        iid = int(self.iid_of_row[row])
        if iid > 0:
            query = self._item_unit[iid]
            if use_faiss:
                distances, labels = self._faiss_index().search(query[None], k + 1)
                found = labels[0] >= 0
                iids, sims = labels[0][found] + 1, distances[0][found]
            else:
                sims_all = self._item_unit[1:] @ query
                top = top_k(sims_all, k + 1)
                iids, sims = top + 1, sims_all[top]
            keep = iids != iid
            rows, sims, source = self.row_of_iid[iids[keep]][:k], sims[keep][:k], "embedding"
        else:
            sims_all = self.scoring.genre_unit @ self.scoring.genre_unit[row]
            sims_all[row] = -np.inf
            rows = np.argsort(-sims_all, kind="stable")[:k]
            sims, source = sims_all[rows], "genre"
        return pd.DataFrame({"rank": np.arange(1, len(rows) + 1), "item_id": self._item_ids[rows],
                             "name": self._names[rows], "genres": self._genre_lists[rows], "type": self._type[rows],
                             "members": self._members[rows].astype(np.int64), "in_model": self._in_model[rows],
                             "similarity": sims.astype(np.float64), "source": source})

    def _faiss_index(self):
        if self._faiss is None:
            import faiss
            vectors = np.ascontiguousarray(self._item_unit[1:], dtype=np.float32)
            index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = 128
            index.add(vectors)
            self._faiss = index
        return self._faiss

    def search(self, query: str, limit: int = 10) -> pd.DataFrame:
        """Typo-tolerant title search (rapidfuzz on lower-cased, punctuation-free names), ties by popularity.

        A title's match (0-100) is the best of: its whole-name similarity to the query; and, if the name
        is at least as long as the query, 0.9 x the best of its word-set match, the query's similarity to its
        closest word, and 0.85 x its partial match (so 'shingeki' finds 'Shingeki no Kyojin', 'narto' finds
        'Naruto: Shippuuden' before 'Sword Art Online', whose "art o" only matches part of a word, and the
        one-letter title 'K' does not match everything). Matches <= 60 are dropped. Returns catalogue rows (with ``in_model``) and ``match``. Only the first MAX_QUERY_CHARS (200)
        characters of the query are used (the cost grows with its length: a megabyte would take minutes).
        """
        limit = check_k(limit, MAX_SEARCH_RESULTS, "limit")
        if not isinstance(query, str):
            raise ValueError(f"query: {type(query).__name__} is not a string")
        query = utils.default_process(query[:MAX_QUERY_CHARS])
        if not query:
            return self.lookup([]).assign(match=pd.Series(dtype=np.float64))
        cdist = lambda scorer, names: process.cdist([query], names, scorer=scorer, dtype=np.float32)[0]
        closest_word = np.maximum.reduceat(cdist(fuzz.ratio, self._search_words), self._search_word_starts)
        within = np.maximum.reduce([0.85 * cdist(fuzz.partial_ratio, self._search_names),
                                    cdist(fuzz.token_set_ratio, self._search_names), closest_word])
        match = np.maximum(cdist(fuzz.ratio, self._search_names),
                           np.where(self._search_lengths >= len(query), 0.9 * within, 0))
        order = np.lexsort((-self._members, -match))[:limit]
        order = order[match[order] > 60]
        return self.lookup(self._item_ids[order]).assign(match=match[order].astype(np.float64))


# ---------------------------------------------------------------------------------------------------
# Catalogue
# ---------------------------------------------------------------------------------------------------
CATALOGUE_COLUMNS = ["item_id", "name", "genres", "type", "members"]


def load_catalogue(path) -> pd.DataFrame:
    """The full anime catalogue (every title, also those the model does not know), as the prep module reads it."""
    return load_anime_catalogue(path)


def default_catalogue_path(meta: dict) -> Path | None:
    """The catalogue file an anime data set was prepared from, if it is still there unchanged."""
    if meta.get("source") != "anime" or not meta.get("files"):
        return None
    recorded = meta["files"][0]
    path = Path(recorded["path"])
    path = path if path.is_absolute() else REPO_ROOT / path
    return path if path.exists() and sha256_of(path) == recorded["sha256"] else None


def _checked_catalogue(catalogue: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """The catalogue with its genres as lists, rows reordered: the model's titles in iid order, then the rest."""
    missing = [c for c in CATALOGUE_COLUMNS if c not in catalogue.columns]
    if missing:
        raise ValueError(f"catalogue: missing columns {missing}")
    catalogue = catalogue.drop(columns=[c for c in ("iid",) if c in catalogue.columns]).reset_index(drop=True)
    duplicated = catalogue["item_id"][catalogue["item_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"catalogue: item_id {int(duplicated.iloc[0])} appears more than once")
    items = items.sort_values("iid")
    if not np.array_equal(items["iid"].to_numpy(), np.arange(1, len(items) + 1)):
        raise ValueError("items: iid is not contiguous from 1")
    rows = pd.Index(catalogue["item_id"]).get_indexer(items["item_id"])
    if (rows < 0).any():
        raise ValueError(f"catalogue: {int((rows < 0).sum())} of the model's titles are missing from it "
                         f"(e.g. item_id {int(items['item_id'].to_numpy()[rows < 0][0])}); is it the catalogue "
                         "the data was prepared from?")
    others = np.setdiff1d(np.arange(len(catalogue)), rows)  # sorted: the catalogue's own order
    catalogue = catalogue.iloc[np.concatenate([rows, others])].reset_index(drop=True)
    genres = catalogue["genres"].map(lambda g: [] if g is None or (not isinstance(g, (list, np.ndarray)) and pd.isna(g))
                                     else list(g))
    return catalogue.assign(genres=genres, name=catalogue["name"].astype(str))


def _check_iid_map(path: Path, dataset: Dataset) -> None:
    import json
    if sha256_of(path) != dataset.iid_map_hash:
        raise ValueError(f"{path}: sha256 differs from the iid_map_sha256 in the processed folder's meta.json; "
                         "it belongs to another preparation of the data")
    mapping = json.loads(path.read_text())
    expected = dict(zip(dataset.items["item_id"].astype(str), dataset.items["iid"].astype(int)))
    if mapping != expected:
        raise ValueError(f"{path}: its item_id -> iid pairs differ from items.parquet")
