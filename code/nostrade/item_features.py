"""A title's side features as small integer codes, for SASRec's feature part of the item vector (use_item_features).

    encoding = FeatureEncoding.fit(dataset.items, dataset.meta.get("source"))
    genre_index, field_codes, numeric = encoding.encode(catalogue_frame)   # any frame with the items' columns

Genres become indices into a genre vocabulary (0 = none; a row is padded with 0 to ``max_genres``; genres not in the
vocabulary are dropped); every other field becomes a bucket code, 0 where the value is missing: ``type`` a category,
``episodes`` / ``members`` (log scale), ``rating_mean`` and ``year`` quantile buckets of the titles the encoding was
fitted on. The numeric fields are also given as values standardised over those titles (0 where missing): buckets let
the model learn any shape per range, the values an exact order within a bucket (ranking cold anime titles by members
alone finds far more of them than a feature model with buckets alone did). The encoding is plain values
(``to_dict``), saved in the model's config, so serving encodes any catalogue title exactly as training did.

Fields are those the items frame has values for, except where the source computes them from its own ratings
(nostrade.dataset.RATING_DERIVED_COLUMNS; MovieLens: ``members`` and ``rating_mean`` are the count and mean of every
rating in the file, test events included, so they would leak held-out events into the features).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from nostrade.dataset import RATING_DERIVED_COLUMNS

NUMERIC_FIELDS = ("episodes", "members", "rating_mean", "year")
LOG_SCALE = ("episodes", "members")
N_BUCKETS = 8


def _numeric(items: pd.DataFrame, field: str) -> np.ndarray:
    """The field as float64 (NaN where missing or absent), on the scale its buckets are cut on."""
    if field not in items:
        return np.full(len(items), np.nan)
    values = pd.to_numeric(items[field], errors="coerce").astype("Float64").to_numpy(np.float64, na_value=np.nan)
    return np.log1p(np.maximum(values, 0)) if field in LOG_SCALE else values


def genre_lists(items: pd.DataFrame) -> list[list[str]]:
    return [list(g) if isinstance(g, (list, tuple, np.ndarray)) else [] for g in items["genres"]]


@dataclass(frozen=True)
class FeatureEncoding:
    genres: list[str]  # genre vocabulary: index = position + 1
    max_genres: int  # genre slots per title
    types: list[str]  # type vocabulary: code = position + 1
    edges: dict[str, list[float]]  # numeric field -> inner bucket edges (code = bucket + 1)
    scale: dict[str, list[float]]  # numeric field -> [mean, std] its values are standardised with

    @property
    def fields(self) -> list[str]:
        """The coded fields, in column order of ``field_codes``."""
        return (["type"] if self.types else []) + list(self.edges)

    @property
    def field_sizes(self) -> list[int]:
        """Codes per field, 0 (missing) included."""
        return ([len(self.types) + 1] if self.types else []) + [len(e) + 2 for e in self.edges.values()]

    @classmethod
    def fit(cls, items: pd.DataFrame, source: str | None = None) -> "FeatureEncoding":
        genres = genre_lists(items)
        vocabulary = sorted({g for gs in genres for g in gs})
        types = sorted(items["type"].dropna().astype(str).unique()) if "type" in items else []
        edges, scale = {}, {}
        for field in NUMERIC_FIELDS:
            values = _numeric(items, field)
            values = values[np.isfinite(values)]
            if len(values) and field not in RATING_DERIVED_COLUMNS.get(source, ()):
                cuts = np.quantile(values, np.linspace(0, 1, N_BUCKETS + 1)[1:-1])
                edges[field] = np.unique(cuts).tolist()
                scale[field] = [float(values.mean()), float(max(values.std(), 1e-6))]
        return cls(vocabulary, max(1, max(map(len, genres), default=1)), list(types), edges, scale)

    def encode(self, items: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(len(items), max_genres) int64 genre indices (0 padding), (len(items), len(fields)) int64 codes and
        (len(items), len(scale)) float32 standardised numeric values (0 where missing)."""
        flat = pd.Series(genre_lists(items), dtype=object).explode().dropna()
        index = pd.Index(self.genres).get_indexer(flat.to_numpy(object)) + 1  # 0: outside the vocabulary, dropped
        rows, index = flat.index.to_numpy()[index > 0], index[index > 0]
        slot = pd.Series(rows).groupby(rows).cumcount().to_numpy()
        fits = slot < self.max_genres
        genre_index = np.zeros((len(items), self.max_genres), dtype=np.int64)
        genre_index[rows[fits], slot[fits]] = index[fits]
        columns, numeric = [], []
        if self.types:
            values = items["type"].to_numpy(object) if "type" in items else np.full(len(items), None)
            columns.append(pd.Index(self.types).get_indexer(values).astype(np.int64) + 1)  # missing, unknown: 0
        for field, edges in self.edges.items():
            values = _numeric(items, field)
            codes = np.searchsorted(np.asarray(edges), values, side="right") + 1
            columns.append(np.where(np.isfinite(values), codes, 0).astype(np.int64))
            mean, std = self.scale[field]
            numeric.append(np.nan_to_num((values - mean) / std, nan=0.0))
        codes = np.stack(columns, axis=1) if columns else np.zeros((len(items), 0), dtype=np.int64)
        numeric = np.stack(numeric, axis=1) if numeric else np.zeros((len(items), 0))
        return genre_index, codes, numeric.astype(np.float32)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "FeatureEncoding":
        return cls(**values)
