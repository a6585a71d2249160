"""nostrade.dataset: processed folders written before the source id was named item_id still load."""
from __future__ import annotations

import shutil

import pyarrow.parquet as pq

from nostrade.dataset import load_dataset
from predict import Recommender


def legacy_copy(processed, folder):
    """A copy of ``processed`` as prep wrote it before issue 29: items.parquet's source id column is anime_id."""
    shutil.copytree(processed, folder)
    items = pq.read_table(folder / "items.parquet")
    pq.write_table(items.rename_columns(["anime_id" if c == "item_id" else c for c in items.column_names]),
                   folder / "items.parquet")
    return folder


def test_a_folder_with_anime_id_loads_with_item_id(processed_sample, tmp_path):
    legacy = load_dataset(legacy_copy(processed_sample, tmp_path / "old"))
    current = load_dataset(processed_sample)
    assert "anime_id" not in legacy.items and legacy.items.equals(current.items)
    assert legacy.iid_map_hash == current.iid_map_hash


def test_a_checkpoint_serves_the_same_from_a_folder_with_anime_id(tiny_checkpoint, processed_sample, tmp_path):
    legacy = Recommender.load(tiny_checkpoint, legacy_copy(processed_sample, tmp_path / "old"))
    current = Recommender.load(tiny_checkpoint, processed_sample)
    history = current.dataset.items["item_id"].to_numpy()[:4].tolist()
    assert legacy.recommend(history, k=5).items.equals(current.recommend(history, k=5).items)
