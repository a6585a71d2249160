"""Read a processed folder (what make_processed_data.py writes) into memory."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nostrade.sequences import Sequences

# Catalogue columns a source computes from its own ratings file, held-out events included (MovieLens: the count and
# mean of every rating). EVAL.md: per-item statistics come from the training part only, so no model reads these.
RATING_DERIVED_COLUMNS = {"movielens": ("members", "rating_mean")}


@dataclass(frozen=True)
class Dataset:
    items: pd.DataFrame  # one row per iid 1..n_items, in iid order
    sequences: Sequences  # one sequence per uid, in uid order
    user_ids: np.ndarray  # source user id of each uid
    meta: dict

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_time_bins(self) -> int:
        return int(self.meta["time_bins"]["n_bins"])

    @property
    def order_is_time(self) -> bool:
        """Whether the sequences' order is time (meta.json's flag; older folders: whether they had timestamps)."""
        return bool(self.meta.get("order_is_time", self.meta.get("has_timestamps", True)))

    @property
    def rating_derived_columns(self) -> tuple[str, ...]:
        """The item columns counted over the whole ratings file (RATING_DERIVED_COLUMNS): never a model input."""
        return RATING_DERIVED_COLUMNS.get(self.meta.get("source"), ())

    def training_items(self, train: Sequences) -> pd.DataFrame:
        """The item table as the training part ``train`` knows it: the rating-derived columns recounted from it
        (members = training events of the title; rating_mean unknown, since a Sequences holds feedback only)."""
        items = self.items.copy()
        if "members" in self.rating_derived_columns:
            known = train.iid[(train.iid >= 1) & (train.iid <= self.n_items)]
            items["members"] = pd.array(np.bincount(known, minlength=self.n_items + 1)[1:], dtype="Int64")
        if "rating_mean" in self.rating_derived_columns:
            items["rating_mean"] = np.nan
        return items

    @property
    def iid_map_hash(self) -> str:
        return self.meta["iid_map_sha256"]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _flat(column) -> tuple[np.ndarray, np.ndarray]:
    lists = column.combine_chunks()
    return lists.offsets.to_numpy().astype(np.int64), lists.values.to_numpy().astype(np.int64)


def load_sequences(folder: Path, has_timestamps: bool) -> tuple[Sequences, np.ndarray]:
    """sequences.parquet (+ interactions.parquet's timestamps when the source has them) -> (Sequences in uid
    order, source user ids)."""
    table = pq.read_table(folder / "sequences.parquet").sort_by("uid")
    offsets, iid = _flat(table.column("iid"))
    _, feedback = _flat(table.column("feedback"))
    _, time_bin = _flat(table.column("time_bin"))
    timestamp = None
    if has_timestamps:
        events = pq.read_table(folder / "interactions.parquet", columns=["uid", "position", "timestamp"])
        if len(events) != len(iid):
            raise ValueError(f"{folder / 'interactions.parquet'}: {len(events)} rows, but sequences.parquet has "
                             f"{len(iid)} events")
        events = events.sort_by([("uid", "ascending"), ("position", "ascending")])
        timestamp = events.column("timestamp").to_numpy(zero_copy_only=False).astype(np.float64)
    return Sequences(offsets, iid, feedback, time_bin, timestamp), table.column("user_id").to_numpy()


def load_dataset(folder: str | Path) -> Dataset:
    folder = Path(folder)
    for name in ("items.parquet", "sequences.parquet", "meta.json"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder / name}: missing; run `python make_processed_data.py --out {folder}` first")
    items = pd.read_parquet(folder / "items.parquet").sort_values("iid").reset_index(drop=True)
    if "anime_id" in items and "item_id" not in items:  # a folder prepared before the source id was named item_id
        items = items.rename(columns={"anime_id": "item_id"})
    meta = json.loads((folder / "meta.json").read_text())
    sequences, user_ids = load_sequences(folder, bool(meta.get("has_timestamps")))
    pa.default_memory_pool().release_unused()  # arrow keeps the freed tables' pages (~0.5 GB at the full size)
    return Dataset(items, sequences, user_ids, meta)
