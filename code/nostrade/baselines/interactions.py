"""Sequences -> sparse user x item matrices, the input every matrix-based baseline starts from."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from nostrade.sequences import Sequences


def known_events(seqs: Sequences, n_items: int) -> np.ndarray:
    """Flat boolean mask of the events whose iid is a real item (1..n_items); padding and unknown ids are dropped."""
    return (seqs.iid >= 1) & (seqs.iid <= n_items)


def interaction_matrix(seqs: Sequences, n_items: int) -> sp.csr_matrix:
    """(n_users, n_items + 1) float32 binary CSR matrix, column = iid (column 0, padding, stays empty); an item
    repeated in a sequence counts once. Built as CSR directly (a sequence's events are one row's entries): scipy's
    constructors cost tens of µs each, and serving builds several of these per request."""
    keep = known_events(seqs, n_items)
    # int32 indices where they fit, as scipy would store them, without its checks and copies (half its cost here)
    index = np.int32 if max(len(keep), n_items + 1) < 2**31 else np.int64
    indptr = np.concatenate([[0], np.cumsum(keep)])[seqs.offsets].astype(index)
    matrix = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), seqs.iid[keep].astype(index), indptr),
                           shape=(seqs.n_users, n_items + 1))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def csr_state(matrix: sp.csr_matrix) -> dict:
    """A CSR matrix as plain tensors (a checkpoint holds tensors only); its shape goes in the model's config."""
    import torch
    return {"indptr": torch.from_numpy(matrix.indptr.astype(np.int64)),
            "indices": torch.from_numpy(matrix.indices.astype(np.int64)),
            "data": torch.from_numpy(np.ascontiguousarray(matrix.data))}


def csr_from_state(state: dict, shape: tuple[int, int]) -> sp.csr_matrix:
    return sp.csr_matrix((state["data"].numpy(), state["indices"].numpy().astype(np.int32),
                          state["indptr"].numpy().astype(np.int32)), shape=tuple(shape))
