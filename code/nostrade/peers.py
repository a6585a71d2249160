"""The peer libraries' MovieLens-100K split (../shared/PEERS.md): their event order imposed on a Dataset.

The split file (ml-100k.split.tsv.gz) has one row per event: ``split`` (train / valid / test), ``user_id``,
``item_id`` and ``order`` (the train events' order). With every user's events in that order, leave-one-out
(nostrade.split) gives exactly the peers' validation and test items, so the figures compare.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from nostrade.dataset import Dataset
from nostrade.sequences import Sequences

SPLIT_RANK = {"train": 0, "valid": 1, "test": 2}


def read_peer_split(path: Path) -> pd.DataFrame:
    split = pd.read_csv(path, sep="\t", usecols=["split", "user_id", "item_id", "order"])
    unknown = set(split["split"]) - set(SPLIT_RANK)
    if unknown:
        raise ValueError(f"{path}: column split has unknown values {sorted(unknown)}")
    return split


def in_peer_order(dataset: Dataset, split_file: Path) -> tuple[Dataset, int]:
    """The dataset with every user's events reordered as the peers' split file has them (train events in its
    `order`, then the validation item, then the test item), and the number of users whose order changed."""
    seqs = dataset.sequences
    events = pd.DataFrame({"row": seqs.row_of_event(), "user_id": dataset.user_ids[seqs.row_of_event()],
                           "item_id": dataset.items["item_id"].to_numpy()[seqs.iid - 1]})
    split = read_peer_split(split_file)
    keyed = events.merge(split, on=["user_id", "item_id"], how="left", validate="one_to_one")
    if keyed["split"].isna().any() or len(split) != len(events):
        raise ValueError(f"{split_file}: does not hold exactly the processed events ({len(split)} rows, "
                         f"{len(events)} events, {int(keyed['split'].isna().sum())} events unmatched)")
    order = np.lexsort((keyed["order"].to_numpy(), keyed["split"].map(SPLIT_RANK).to_numpy(), keyed["row"].to_numpy()))
    reordered = Sequences(seqs.offsets, seqs.iid[order], seqs.feedback[order], seqs.time_bin[order])
    changed = np.unique(keyed["row"].to_numpy()[order != np.arange(len(order))])
    return dataclasses.replace(dataset, sequences=reordered), len(changed)


def check_targets_match(dataset: Dataset, split, split_file: Path) -> None:
    """Raise AssertionError unless ``split`` (leave-one-out) has the split file's validation and test items."""
    peer = read_peer_split(split_file)
    item_of_iid = dataset.items["item_id"].to_numpy()
    for name, cases in (("valid", split.valid), ("test", split.test)):
        ours = pd.Series(item_of_iid[cases.target - 1], index=dataset.user_ids[cases.users]).sort_index()
        theirs = peer[peer["split"] == name].set_index("user_id")["item_id"].sort_index()
        if not ours.equals(theirs):
            raise AssertionError(f"{name} targets differ from {split_file} for {int((ours != theirs).sum())} users")
