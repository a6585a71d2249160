"""Raw ratings -> the processed data contract (items/interactions/sequences parquet, meta.json, iid_map.json).

The rules, in the order they apply (each is recorded in meta.json):
1. Rating rows whose item id is not in the catalogue are dropped (warning; counted).
2. Ordering: per user, by timestamp. Events of one user sharing a timestamp are put in a seeded
   random order (--tie-seed): their order in the file is not time, so it must not look like it. Sources
   without timestamps keep source file order (a stable sort); for the Kaggle anime rating.csv that is
   item_id order within each user. meta.json says which: "order_is_time" (true only for an order made
   by timestamps) and "ties" (rule, seed, number of events of the output sharing their user's timestamp).
3. Duplicate (user, item) events: the latest one in that order wins (the last by timestamp; within a
   tie, the last in the shuffled order; without timestamps, the last in the file); the earlier ones are
   dropped and counted. Not an error.
4. Feedback: rating <= dislike_max -> 1 Dislike, <= like_max -> 2 Like, above -> 3 Love. The anime
   "-1" and the MyAnimeList score 0 (watched, not rated) follow --unrated: "like" keeps it as 2 Like with
   rating NaN, "drop" removes it. (The MAL reader's own policies, e.g. plan-to-watch rows dropped, are in
   nostrade.sources; what they drop is counted in meta.json "dropped" too.)
5. Items with fewer than min_item_users distinct users are dropped (one pass, not an iterated
   k-core); then users left without events are dropped.
6. Ids: iid 1..n_items in ascending source item id (0 is padding); uid 0..n_users-1 in ascending
   source user id.
7. Time bins: calendar periods (UTC month, quarter or year) counted from the first period present,
   bin = 1 + periods since then. Without timestamps every event is bin 1 (n_bins 1, scheme "none").

Outputs are written into a new version folder beside the target, then one rename of a link commits them
(``write``), so a failed or killed run leaves the previous output untouched; reruns on the same input are
byte-identical.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from nostrade.atomic import WriteError, fault_point
from nostrade.sequences import DISLIKE, FEEDBACK_NAMES, LIKE, LOVE
from nostrade.sources import DataError, RawData, read_anime, read_mal, read_movielens
from nostrade.synthetic import SyntheticConfig, write_synthetic

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ITEMS = REPO_ROOT / "data" / "sample" / "anime.csv.gz"
DEFAULT_RATINGS = REPO_ROOT / "data" / "sample" / "rating_sample.csv.gz"
DEFAULT_MOVIELENS = REPO_ROOT.parent / "shared" / "data" / "ml-100k"
DEFAULT_SYNTHETIC_DIR = REPO_ROOT / "data" / "synthetic"
DEFAULT_OUT = REPO_ROOT / "data" / "processed"
DEFAULT_ARTIFACTS = REPO_ROOT / "artifacts"
TIME_BIN_SCHEMES = ("month", "quarter", "year")
UNRATED_POLICIES = ("like", "drop")
ORDERING_RULE = ("per user by timestamp; events of a user with equal timestamps in a seeded random order (see "
                 "'ties'); sources without timestamps keep source file order (stable; 'order_is_time' false); "
                 "duplicate (user, item) events: the latest in this order wins")
TIE_RULE = "seeded shuffle within equal timestamps"

ITEMS_SCHEMA = pa.schema([("iid", pa.int32()), ("item_id", pa.int64()), ("name", pa.string()),
                          ("genres", pa.list_(pa.string())), ("type", pa.string()), ("episodes", pa.int64()),
                          ("rating_mean", pa.float64()), ("members", pa.int64()), ("year", pa.int64())])
INTERACTIONS_SCHEMA = pa.schema([("uid", pa.int32()), ("user_id", pa.int64()), ("iid", pa.int32()),
                                 ("feedback", pa.int8()), ("rating", pa.float32()), ("timestamp", pa.int64()),
                                 ("time_bin", pa.int16()), ("position", pa.int32())])
SEQUENCES_SCHEMA = pa.schema([("uid", pa.int32()), ("user_id", pa.int64()), ("iid", pa.list_(pa.int32())),
                              ("feedback", pa.list_(pa.int8())), ("time_bin", pa.list_(pa.int16()))])


@dataclass
class PrepConfig:
    source: str = "anime"  # anime | mal | movielens | synthetic
    items: Path | None = None  # catalogue file; None = the source's default (mal: the anime sample's catalogue)
    ratings: Path | None = None  # ratings file (MovieLens: file or folder); None = the source's default (mal: none)
    out: Path = DEFAULT_OUT
    artifacts: Path = DEFAULT_ARTIFACTS
    dislike_max: float | None = None  # None = source default (anime 4, MovieLens 2)
    like_max: float | None = None  # None = source default (anime 7, MovieLens 4)
    unrated: str = "like"
    min_item_users: int = 10
    time_bin: str = "month"
    tie_seed: int = 0  # order of a user's events that share a timestamp
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    synthetic_dir: Path = DEFAULT_SYNTHETIC_DIR  # where --source synthetic writes its raw files


@dataclass
class Processed:
    items: pa.Table
    interactions: pa.Table
    sequences: pa.Table
    iid_map_json: bytes
    meta: dict


# ----------------------------------------------------------------------------------------- reading

def load_raw(cfg: PrepConfig) -> RawData:
    if cfg.source == "anime":
        return read_anime(cfg.items or DEFAULT_ITEMS, cfg.ratings or DEFAULT_RATINGS)
    if cfg.source == "mal":
        if cfg.ratings is None:
            raise ValueError("--source mal needs --ratings (a MyAnimeList UserAnimeList.csv or animelists_cleaned.csv)")
        return read_mal(cfg.items or DEFAULT_ITEMS, cfg.ratings)
    if cfg.source == "movielens":
        return read_movielens(cfg.ratings or DEFAULT_MOVIELENS, cfg.items)
    if cfg.source == "synthetic":
        items, ratings = write_synthetic(cfg.synthetic, cfg.synthetic_dir)
        return read_anime(items, ratings)
    raise ValueError(f"unknown source {cfg.source!r} (expected anime, mal, movielens or synthetic)")


# ----------------------------------------------------------------------------------------- the rules

def order_events(user_code: np.ndarray, timestamp: np.ndarray | None, tie_seed: int = 0) -> np.ndarray:
    """The permutation that orders events by (user, timestamp). A user's events with equal timestamps go in a
    seeded random order (``tie_seed``); without timestamps, file order within each user (stable)."""
    if timestamp is None:
        key = user_code.astype(np.int64)
    else:
        t = timestamp - timestamp.min() if len(timestamp) else timestamp
        span = int(t.max()) + 1 if len(t) else 1
        key = user_code.astype(np.int64) * span + t if (int(user_code.max()) + 1) * span < 2 ** 62 else None
    if key is None:  # (user, timestamp) keys would overflow
        order = np.lexsort((timestamp, user_code))
    elif len(key) < 2 or bool((key[1:] >= key[:-1]).all()):
        order = np.arange(len(key))
    else:
        order = np.argsort(key, kind="stable")
    if timestamp is None:
        return order
    user, stamp = user_code[order], timestamp[order]
    tied = np.flatnonzero(tie_mask(user, stamp))  # positions in the order, each tie's together
    if len(tied):
        shuffle = np.random.default_rng(tie_seed).random(len(tied))
        order[tied] = order[tied[np.lexsort((shuffle, stamp[tied], user[tied]))]]
    return order


def tie_mask(user: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Over events ordered by (user, timestamp): True for each event that shares its user's timestamp with another."""
    with_next = (user[1:] == user[:-1]) & (timestamp[1:] == timestamp[:-1])
    return np.r_[with_next, False] | np.r_[False, with_next]


def earlier_duplicates(user_code: np.ndarray, item_code: np.ndarray, rank: np.ndarray, n_items: int) -> np.ndarray:
    """Over events in file order: True for each event that a later event of the same (user, item) supersedes,
    where later means a higher ``rank`` (each event's place in the final order)."""
    key = user_code.astype(np.int64) * n_items + item_code
    perm = np.argsort(key, kind="stable")  # O(n) when the file is sorted by user and item, as Kaggle's is
    sorted_key = key[perm]
    same_as_next = sorted_key[:-1] == sorted_key[1:]
    superseded = np.zeros(len(key), dtype=bool)
    if not same_as_next.any():
        return superseded
    rows = perm[np.r_[same_as_next, False] | np.r_[False, same_as_next]]  # every row that has a twin
    rows = rows[np.lexsort((rank[rows], key[rows]))]  # twins together, the latest of each group last
    superseded[rows[:-1][key[rows[:-1]] == key[rows[1:]]]] = True
    return superseded


def codes_of(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes 0..k-1 of int ids in ascending id order, and the ids; O(n) when already sorted."""
    if len(values) < 2 or bool((values[1:] >= values[:-1]).all()):
        new = np.r_[True, values[1:] != values[:-1]] if len(values) else np.zeros(0, bool)
        return np.cumsum(new) - 1, values[new]
    codes, uniques = pd.factorize(values, sort=True)
    return codes, np.asarray(uniques, dtype=np.int64)


def lookup(sorted_ids: np.ndarray, ids: np.ndarray, table_limit: int = 1 << 24) -> np.ndarray:
    """Position of each id in ``sorted_ids`` (unique, ascending), -1 where absent."""
    if len(ids) and len(sorted_ids) and 0 <= min(ids.min(), sorted_ids[0]) \
            and max(ids.max(), sorted_ids[-1]) < table_limit:  # small non-negative ids: a direct table
        table = np.full(max(ids.max(), sorted_ids[-1]) + 1, -1, dtype=np.int64)
        table[sorted_ids] = np.arange(len(sorted_ids))
        return table[ids]
    return pd.Index(sorted_ids).get_indexer(ids)


def feedback_of(rating: np.ndarray, dislike_max: float, like_max: float) -> np.ndarray:
    """1 Dislike (rating <= dislike_max), 2 Like (<= like_max), 3 Love."""
    return (DISLIKE + (rating > dislike_max).view(np.int8) + (rating > like_max).view(np.int8)).astype(np.int8)


def time_bins(timestamp: np.ndarray, scheme: str) -> tuple[np.ndarray, dict]:
    """Calendar-period bins from 1; periods in UTC."""
    # Calendar arithmetic only for the distinct days spanned; events look their day up in that table.
    day = timestamp // 86400
    first_day = int(day.min())
    days = np.arange(first_day, int(day.max()) + 1).astype("datetime64[D]")
    if scheme == "year":
        period_of_day = days.astype("datetime64[Y]").astype(np.int64)
    else:
        period_of_day = days.astype("datetime64[M]").astype(np.int64)
        if scheme == "quarter":
            period_of_day //= 3
    period = period_of_day[day - first_day]
    first, last = int(period.min()), int(period.max())
    n_bins = last - first + 1
    if n_bins > np.iinfo(np.int16).max:
        raise ValueError(f"{n_bins} {scheme} bins do not fit int16; use a coarser --time-bin")

    def label(p: int) -> str:
        if scheme == "year":
            return str(1970 + p)
        if scheme == "quarter":
            return f"{1970 + p // 4}-Q{p % 4 + 1}"
        return f"{1970 + p // 12}-{p % 12 + 1:02d}"

    info = {"scheme": scheme, "n_bins": n_bins, "first_period": label(first), "last_period": label(last),
            "timezone": "UTC", "rule": "bin = 1 + calendar periods since the first period in the data"}
    return (period - first + 1).astype(np.int16), info


def period_start(label: str, scheme: str) -> int:
    """Unix seconds at the start of a period label written by ``time_bins`` ('2019', '2019-Q2', '2019-03')."""
    if scheme == "quarter":
        year, quarter = label.split("-Q")
        label = f"{year}-{3 * (int(quarter) - 1) + 1:02d}"
    return int(np.datetime64(label, "s").astype(np.int64))


def time_bins_of(timestamp: np.ndarray, info: dict) -> np.ndarray:
    """The time bins of new events (unix seconds) by a data set's own scheme (its meta.json ``time_bins``):
    anchored at its first period, events before it in bin 1, events after its last period in the last bin.
    All 1 when the data has no timestamps."""
    n_bins = int(info.get("n_bins", 1))
    if info.get("scheme", "none") == "none" or n_bins <= 1 or len(timestamp) == 0:
        return np.ones(len(timestamp), dtype=np.int64)
    start = period_start(info["first_period"], info["scheme"])
    # Clipped to [first period, a year per bin after it] before any arithmetic: later events land in the last
    # bin anyway, and a far-future timestamp must not make time_bins span millions of days.
    clipped = np.clip(np.asarray(timestamp, dtype=np.float64), start, start + (n_bins + 1) * 366 * 86400)
    anchored = np.concatenate([[start], clipped.astype(np.int64)])
    return np.minimum(time_bins(anchored, info["scheme"])[0][1:].astype(np.int64), n_bins)


def build(raw: RawData, cfg: PrepConfig) -> Processed:
    """Apply the rules to a raw frame; pure (no files written)."""
    with ThreadPoolExecutor(1) as pool:  # hash the input files while the arrays are worked on
        return _build(raw, cfg, pool.submit(lambda: [_sha256(f["path"]) for f in raw.files]))


@dataclass
class Events:
    """The rating rows as they pass the rules, one entry per event."""
    user: np.ndarray  # user code: index into the source user ids (codes_of)
    item: np.ndarray  # catalogue row (the catalogue sorted by source item id)
    rating: np.ndarray
    timestamp: np.ndarray | None  # None: the source has none
    feedback: np.ndarray | None = None  # from rule 4 on

    def take(self, index: np.ndarray) -> "Events":
        return Events(*(None if values is None else values[index] for values in dataclasses.astuple(self)))


def _build(raw: RawData, cfg: PrepConfig, file_hashes: Future) -> Processed:
    """The rules of the module docstring, one function each, in order; then the tables and meta.json."""
    thresholds = _feedback_thresholds(raw, cfg)
    dropped = dict(raw.dropped)  # rows the reader's policies removed (MAL: plan to watch, undated)
    catalogue = raw.items.sort_values("item_id", kind="stable").reset_index(drop=True)
    events, user_values = _known_items(raw, catalogue, dropped)
    events = _latest_of_duplicates(events, _time_order(events, cfg.tie_seed), len(catalogue), dropped)
    events = _with_feedback(events, raw, cfg.unrated, thresholds, dropped)
    events, item_kept = _without_rare_items(events, len(catalogue), cfg.min_item_users, dropped)
    if len(events.user) == 0:
        raise DataError(raw.files[-1]["path"], f"no interactions left after filtering (min_item_users="
                                               f"{cfg.min_item_users}, unrated={cfg.unrated})")
    uid, user_ids, offsets, iid = _ids(events, user_values, item_kept, dropped)
    time_bin, time_info = _event_time_bins(events.timestamp, cfg.time_bin, len(uid))
    kept_items = catalogue[item_kept].reset_index(drop=True)
    iid_map = {str(a): int(i) for a, i in zip(kept_items["item_id"], range(1, len(kept_items) + 1))}
    iid_map_json = (json.dumps(iid_map, separators=(",", ":")) + "\n").encode()
    interactions, sequences = _event_tables(events, uid, user_ids, offsets, iid, time_bin)
    meta = _meta(raw, cfg, file_hashes, thresholds, dropped, events, uid, user_ids, kept_items, time_info)
    meta["iid_map_sha256"] = hashlib.sha256(iid_map_json).hexdigest()
    return Processed(_items_table(kept_items), interactions, sequences, iid_map_json, meta)


def _feedback_thresholds(raw: RawData, cfg: PrepConfig) -> tuple[float, float]:
    """(dislike_max, like_max): the flags', else the source's; bad options fail here, before any work."""
    dislike_max = raw.feedback_thresholds[0] if cfg.dislike_max is None else cfg.dislike_max
    like_max = raw.feedback_thresholds[1] if cfg.like_max is None else cfg.like_max
    if not dislike_max < like_max:
        raise ValueError(f"feedback thresholds must satisfy dislike_max < like_max (got {dislike_max}, {like_max})")
    if cfg.unrated not in UNRATED_POLICIES:
        raise ValueError(f"unknown unrated policy {cfg.unrated!r} (expected like or drop)")
    if cfg.time_bin not in TIME_BIN_SCHEMES:
        raise ValueError(f"unknown time-bin scheme {cfg.time_bin!r} (expected month, quarter or year)")
    return float(dislike_max), float(like_max)  # one form in meta.json, whether a flag or the default set them


def _known_items(raw: RawData, catalogue: pd.DataFrame, dropped: dict) -> tuple[Events, np.ndarray]:
    """Rule 1: the rating rows whose item id is in the catalogue (the others dropped, with a warning), and the
    source user ids their user codes index."""
    item = lookup(catalogue["item_id"].to_numpy(np.int64), raw.ratings["item_id"].to_numpy(np.int64))
    known = item >= 0
    dropped["unknown_item_rows"] = int(len(known) - np.count_nonzero(known))
    events = Events(raw.ratings["user_id"].to_numpy(np.int64), item, raw.ratings["rating"].to_numpy(np.float64),
                    raw.ratings["timestamp"].to_numpy(np.int64) if raw.has_timestamps else None)
    if dropped["unknown_item_rows"]:
        examples = np.unique(raw.ratings["item_id"].to_numpy()[~known])[:5]
        warnings.warn(f"{raw.files[-1]['path']}: {dropped['unknown_item_rows']} rating rows name an item id absent "
                      f"from the catalogue (e.g. {', '.join(map(str, examples))}); dropped", stacklevel=3)
        events = events.take(known)
    user_code, user_values = codes_of(events.user)
    return dataclasses.replace(events, user=user_code), user_values


def _time_order(events: Events, tie_seed: int) -> np.ndarray:
    """Rule 2: the order of the events: per user by timestamp, ties in a seeded random order (without timestamps:
    file order)."""
    return order_events(events.user, events.timestamp, tie_seed)


def _latest_of_duplicates(events: Events, order: np.ndarray, n_catalogue: int, dropped: dict) -> Events:
    """Rule 3: of a user's events of one item, the last in the order wins; the events in that order."""
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    superseded = earlier_duplicates(events.user, events.item, rank, n_catalogue)
    dropped["duplicate_rows"] = int(superseded.sum())
    return events.take(order[~superseded[order]] if dropped["duplicate_rows"] else order)


def _with_feedback(events: Events, raw: RawData, unrated_policy: str, thresholds: tuple[float, float],
                   dropped: dict) -> Events:
    """Rule 4: Dislike / Like / Love from the rating; a watched-but-unrated row a Like (rating NaN) or dropped."""
    rating = events.rating
    unrated = (rating == raw.unrated_value) if raw.unrated_value is not None else np.zeros(len(rating), bool)
    feedback = feedback_of(rating, *thresholds)
    feedback[unrated] = LIKE
    events = dataclasses.replace(events, rating=np.where(unrated, np.nan, rating).astype(np.float32),
                                 feedback=feedback)
    keep = ~unrated if unrated_policy == "drop" else np.ones(len(rating), dtype=bool)
    dropped["unrated_rows"] = int(len(keep) - np.count_nonzero(keep))
    return events.take(keep) if dropped["unrated_rows"] else events


def _without_rare_items(events: Events, n_catalogue: int, min_item_users: int,
                        dropped: dict) -> tuple[Events, np.ndarray]:
    """Rule 5: items with fewer than min_item_users distinct users dropped (one pass); the (catalogue,) mask of
    the items kept."""
    users_per_item = np.bincount(events.item, minlength=n_catalogue)
    item_kept = users_per_item >= max(min_item_users, 1)
    dropped["rare_items"] = int(((users_per_item > 0) & ~item_kept).sum())
    rare_events = ~item_kept[events.item]
    dropped["rare_item_rows"] = int(rare_events.sum())
    return events.take(~rare_events), item_kept


def _ids(events: Events, user_values: np.ndarray, item_kept: np.ndarray,
         dropped: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rule 6: uid per event (0.., ascending source user id: users left without events dropped), the source user
    id of each uid, the offsets of each user's events, and iid per event (1.., ascending source item id)."""
    new_user = np.r_[True, events.user[1:] != events.user[:-1]]
    uid = (np.cumsum(new_user) - 1).astype(np.int32)
    user_ids = np.asarray(user_values, dtype=np.int64)[events.user[new_user]]
    dropped["users_without_events"] = int(len(user_values) - len(user_ids))
    offsets = np.r_[np.flatnonzero(new_user), len(uid)].astype(np.int64)
    iid_of_item = np.where(item_kept, np.cumsum(item_kept), 0).astype(np.int32)
    return uid, user_ids, offsets, iid_of_item[events.item]


def _event_time_bins(timestamp: np.ndarray | None, scheme: str, n_events: int) -> tuple[np.ndarray, dict]:
    """Rule 7: calendar periods counted from the first one present; without timestamps every event is bin 1."""
    if timestamp is not None:
        return time_bins(timestamp, scheme)
    return np.ones(n_events, dtype=np.int16), {"scheme": "none", "n_bins": 1,
                                               "rule": "the source has no timestamps: every event is bin 1"}


def _event_tables(events: Events, uid: np.ndarray, user_ids: np.ndarray, offsets: np.ndarray, iid: np.ndarray,
                  time_bin: np.ndarray) -> tuple[pa.Table, pa.Table]:
    """interactions.parquet (one row per event) and sequences.parquet (one row per user, lists of events)."""
    position = (np.arange(len(uid)) - offsets[uid]).astype(np.int32)
    timestamp = events.timestamp
    interactions = pa.Table.from_arrays([
        pa.array(uid), pa.array(user_ids[uid]), pa.array(iid), pa.array(events.feedback),
        pa.array(events.rating, from_pandas=False),
        pa.array(timestamp) if timestamp is not None else pa.nulls(len(uid), pa.int64()),
        pa.array(time_bin), pa.array(position)], schema=INTERACTIONS_SCHEMA)
    list_offsets = pa.array(offsets.astype(np.int32))
    sequences = pa.Table.from_arrays([
        pa.array(np.arange(len(user_ids), dtype=np.int32)), pa.array(user_ids),
        pa.ListArray.from_arrays(list_offsets, pa.array(iid)),
        pa.ListArray.from_arrays(list_offsets, pa.array(events.feedback)),
        pa.ListArray.from_arrays(list_offsets, pa.array(time_bin))], schema=SEQUENCES_SCHEMA)
    return interactions, sequences


def _meta(raw: RawData, cfg: PrepConfig, file_hashes: Future, thresholds: tuple[float, float], dropped: dict,
          events: Events, uid: np.ndarray, user_ids: np.ndarray, kept_items: pd.DataFrame, time_info: dict) -> dict:
    """meta.json: the sources and every rule's setting and counts (the iid map's sha256 is added by _build)."""
    timestamp, counts = events.timestamp, np.bincount(events.feedback, minlength=4)
    return {
        "source": raw.source,
        "format": raw.format,
        "synthetic": raw.synthetic is not None,
        **({"generator": raw.synthetic} if raw.synthetic is not None else {}),
        "files": [{"path": _shown_path(f["path"]), "sha256": digest, "rows": int(f["rows"])}
                  for f, digest in zip(raw.files, file_hashes.result())],
        "feedback_thresholds": {"dislike_max": thresholds[0], "like_max": thresholds[1],
                                "rule": "rating <= dislike_max: 1 Dislike; <= like_max: 2 Like; else 3 Love"},
        "unrated_policy": {"value": raw.unrated_value, "policy": cfg.unrated,
                           "rule": ("watched but not rated counts as 2 Like, rating stored as NaN"
                                    if cfg.unrated == "like" else "watched but not rated rows are dropped")}
        if raw.unrated_value is not None else {"value": None, "policy": "n/a (the source has no unrated value)"},
        "min_item_users": cfg.min_item_users,
        "dropped": dropped,
        "ordering": ORDERING_RULE,
        "order_is_time": timestamp is not None,
        "ties": {"rule": TIE_RULE, "seed": cfg.tie_seed, "n_tied_events": int(tie_mask(uid, timestamp).sum())}
        if timestamp is not None else {"rule": "n/a (the source has no timestamps: file order)"},
        "has_timestamps": timestamp is not None,
        "time_bins": time_info,
        "n_users": int(len(user_ids)),
        "n_items": int(len(kept_items)),
        "n_interactions": int(len(uid)),
        "feedback_counts": {FEEDBACK_NAMES[k]: int(counts[k]) for k in (DISLIKE, LIKE, LOVE)},
        "unrated_kept": int((np.isnan(events.rating)).sum()),
    }


def _items_table(items: pd.DataFrame) -> pa.Table:
    n = len(items)
    return pa.Table.from_arrays([
        pa.array(np.arange(1, n + 1, dtype=np.int32)),
        pa.array(items["item_id"].to_numpy(np.int64)),
        pa.array(items["name"].astype(object).tolist(), pa.string()),
        pa.array(items["genres"].tolist(), pa.list_(pa.string())),
        pa.array(items["type"].astype(object).where(items["type"].notna(), None).tolist(), pa.string()),
        pa.array(items["episodes"].astype("Int64"), pa.int64()),
        pa.array(items["rating_mean"].to_numpy(np.float64), pa.float64(), from_pandas=True),
        pa.array(items["members"].astype("Int64"), pa.int64()),
        pa.array(items["year"].astype("Int64") if "year" in items else [None] * n, pa.int64())],  # optional column
        schema=ITEMS_SCHEMA)


def _shown_path(path: Path) -> str:
    """Repo-relative when inside the repo (so meta.json does not depend on the working directory)."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return resolved.as_posix()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------- writing

def write(processed: Processed, out: Path, artifacts: Path) -> None:
    """Commit the output as a whole: ``out`` and ``artifacts/iid_map.json`` show the previous run or this one.

    ``out`` is a symbolic link to a version folder beside it, ``.NAME.v-XXXX``, holding the parquet files,
    meta.json and iid_map.json; ``artifacts/iid_map.json`` is a link to ``out/iid_map.json``, so the two
    always name the same version. The steps: (1) write the new version folder (fsynced); (2) make sure the
    artifacts link exists; (3) point ``out`` at the new version: one rename of a link, the commit;
    (4) delete the other versions and whatever an interrupted run left. An error or a kill before (3)
    leaves the previous output as it was (the next run deletes the unused folder); after it, the new
    output is whole. A plain folder ``out`` (older code wrote one) is moved aside just before (3); a run
    killed right there is restored by the next run. A lock file ``.NAME.lock`` serialises runs on one ``out``.
    """
    out, artifacts = Path(out), Path(artifacts)
    if out.is_symlink() and not _version_of(out):  # a link the user made: write where it points
        out = Path(os.path.realpath(out))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = open(out.parent / f".{out.name}.lock", "a")
    except OSError as err:
        raise WriteError(f"cannot write {out}: {err.strerror or err}") from err
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _recover(out)
        if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "meta.json").exists())):
            raise DataError(out, "refusing to replace it: not a processed-data folder (no meta.json)")
        version = _write_version(processed, out)
        try:
            _link_iid_map(out, artifacts)
            fault_point("prep:before-commit")
            if out.exists() and not out.is_symlink():  # a plain folder from older code
                os.replace(out, Path(tempfile.mkdtemp(prefix=f".{out.name}.parked-", dir=out.parent)) / "folder")
                fault_point("prep:parked")
            _replace_link(out, version.name)
        except BaseException:
            if _version_of(out) != version.name:  # not committed: the previous output stays
                shutil.rmtree(version, ignore_errors=True)
                _recover(out)  # a plain folder moved aside goes back
            raise
        fault_point("prep:committed")
        _clean(out)


def _write_version(processed: Processed, out: Path) -> Path:
    """The complete output in a new version folder beside ``out`` (nothing points at it yet)."""
    try:
        version = Path(tempfile.mkdtemp(prefix=f".{out.name}.v-", dir=out.parent))
    except OSError as err:
        raise WriteError(f"cannot write {out}: {err.strerror or err}") from err
    files = {"items.parquet": processed.items, "interactions.parquet": processed.interactions,
             "sequences.parquet": processed.sequences, "iid_map.json": processed.iid_map_json,
             "meta.json": (json.dumps(processed.meta, indent=2) + "\n").encode()}

    def write_one(name: str) -> None:
        path = version / name
        try:
            if isinstance(files[name], bytes):
                path.write_bytes(files[name])
            else:
                pq.write_table(files[name], path)
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        except OSError as err:  # pyarrow's own message names no file
            raise WriteError(f"cannot write {path}: {err.strerror or err}") from err

    try:
        with ThreadPoolExecutor(3) as pool:  # parquet encoding releases the GIL
            list(pool.map(write_one, files))
        os.chmod(version, 0o755)
        _fsync_dir(version)
    except BaseException:
        shutil.rmtree(version, ignore_errors=True)
        raise
    fault_point("prep:version-written")
    return version


def _version_of(out: Path) -> str | None:
    """The version folder ``out`` links to (its name), None when it is not such a link."""
    if not out.is_symlink():
        return None
    target = os.readlink(out)
    return target if target.startswith(f".{out.name}.v-") and "/" not in target else None


def _replace_link(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` with one atomic rename (a new link made beside it, then renamed over)."""
    tmp = link.with_name(f".{link.name}.link-{secrets.token_hex(4)}")
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
        _fsync_dir(link.parent)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise WriteError(f"cannot write {link}: {err.strerror or err}") from err


def _link_iid_map(out: Path, artifacts: Path) -> None:
    """``artifacts/iid_map.json`` -> ``out/iid_map.json`` (relative link); nothing to do if it already is one,
    or if ``artifacts`` is ``out`` itself."""
    if os.path.abspath(artifacts) == os.path.abspath(out):
        return
    link = artifacts / "iid_map.json"
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(Path(os.path.realpath(out.parent)) / out.name / "iid_map.json",
                                 os.path.realpath(artifacts))
    except OSError as err:
        raise WriteError(f"cannot write {link}: {err.strerror or err}") from err
    if not (link.is_symlink() and os.readlink(link) == target):
        _replace_link(link, target)


def _leftovers(out: Path) -> list[Path]:
    """Everything beside ``out`` that a run made and the current output does not use."""
    current = _version_of(out)
    found = [p for kind in ("v", "tmp", "old", "parked", "link")
             for p in out.parent.glob(f".{glob.escape(out.name)}.{kind}-*")]
    return sorted(p for p in found if p.name != current)


def _recover(out: Path) -> None:
    """A run killed after moving a plain ``out`` aside and before linking the new version left no ``out``:
    put the folder back (also the ``.NAME.old-*`` folders of older code)."""
    if out.exists() or out.is_symlink():
        return
    parked = [p / "folder" for p in out.parent.glob(f".{glob.escape(out.name)}.parked-*")] + \
             [p / out.name for p in out.parent.glob(f".{glob.escape(out.name)}.old-*")]
    parked = [p for p in parked if (p / "meta.json").is_file()]
    if parked:
        os.replace(max(parked, key=lambda p: p.stat().st_mtime), out)


def _clean(out: Path) -> None:
    for leftover in _leftovers(out):
        if leftover.is_symlink() or not leftover.is_dir():
            leftover.unlink(missing_ok=True)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run(cfg: PrepConfig) -> Processed:
    """Read, apply the rules, write. A stage progress bar shows on a terminal (full-size data takes seconds)."""
    with tqdm(total=3, desc="prep", unit="stage", disable=None, leave=False) as bar:
        bar.set_postfix_str("reading")
        raw = load_raw(cfg)
        bar.update()
        bar.set_postfix_str("applying the rules")
        processed = build(raw, cfg)
        bar.update()
        bar.set_postfix_str("writing")
        write(processed, cfg.out, cfg.artifacts)
        bar.update()
    return processed


def summary(processed: Processed, out: Path) -> str:
    meta = processed.meta
    lengths = np.diff(processed.sequences.column("iid").combine_chunks().offsets.to_numpy())
    total = max(meta["n_interactions"], 1)
    feedback = ", ".join(f"{name} {n:,} ({100 * n / total:.1f}%)" for name, n in meta["feedback_counts"].items())
    dropped = ", ".join(f"{k} {v:,}" for k, v in meta["dropped"].items() if v)
    bins = meta["time_bins"]
    lines = [
        f"{meta['source']} ({meta['format']} format) -> {out}",
        f"users {meta['n_users']:,}  items {meta['n_items']:,}  interactions {meta['n_interactions']:,}",
        f"feedback: {feedback}" + (f"; {meta['unrated_kept']:,} unrated kept as Like" if meta["unrated_kept"] else ""),
        f"sequence length: min {lengths.min()}, median {np.median(lengths):g}, mean {lengths.mean():.1f}, "
        f"max {lengths.max()}",
        f"time bins: {bins['scheme']} x {bins['n_bins']}" + ("" if meta["has_timestamps"] else " (no timestamps)"),
        f"dropped: {dropped or 'nothing'}",
    ]
    return "\n".join(lines)
