"""A diverse slate and how diverse a slate is.

- ``mmr``: maximal marginal relevance (Carbonell & Goldstein 1998) over a ranking's top ``depth`` titles: pick,
  one place at a time, the title maximising λ·relevance − (1 − λ)·(max cosine to the titles already picked),
  relevance being the score min-max scaled over those ``depth`` titles. λ = 1 keeps the ranking; lower trades
  accuracy for variety. The titles below ``depth`` keep their order.
- ``slate_stats``: coverage@k (share of the titles that appear in anybody's top k) and intra-list diversity@k
  (mean 1 − cosine over the pairs of a top k, averaged over the lists) of a scorer on evaluation cases, seen
  titles excluded as in nostrade.evaluate.
"""
from __future__ import annotations

import numpy as np
import torch

from nostrade.evaluate import Scorer, history_mask
from nostrade.split import EvalCases


def mmr(scores: np.ndarray, unit_vectors: np.ndarray, lam: float, depth: int = 50) -> np.ndarray:
    """``scores`` (B, n) re-ranked: its top ``depth`` titles per row (ranked by score, -inf never picked) put in
    MMR order above the rest. ``unit_vectors`` (n, d): the space in which titles are alike."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"mmr lambda: {lam} must be in [0, 1]")
    depth = min(depth, scores.shape[1])
    rows = np.arange(len(scores))[:, None]
    top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    top_scores = scores[rows, top]
    valid = np.isfinite(top_scores)
    low = np.where(valid, top_scores, np.inf).min(axis=1, keepdims=True)
    high = np.where(valid, top_scores, -np.inf).max(axis=1, keepdims=True)
    relevance = np.where(valid, (top_scores - low) / np.maximum(high - low, 1e-12), 0.0)
    vectors = unit_vectors[top]  # (B, depth, d)
    similarity = vectors @ vectors.transpose(0, 2, 1)  # (B, depth, depth)
    closest = np.full(top.shape, -np.inf)  # max cosine to the picked titles (none yet: no penalty)
    free = valid.copy()
    out = scores.astype(np.float32).copy()
    ceiling = np.where(valid.any(axis=1), high[:, 0], 0.0).astype(np.float32)
    for place in range(depth):
        gain = lam * relevance - (1.0 - lam) * np.maximum(closest, 0.0)
        gain = np.where(free, gain, -np.inf)
        pick = gain.argmax(axis=1)
        live = free[rows[:, 0], pick]
        out[rows[live, 0], top[live, pick[live]]] = ceiling[live] + depth - place
        free[rows[:, 0], pick] = False
        closest = np.maximum(closest, similarity[rows[:, 0], pick])
    return out


@torch.no_grad()
def slate_stats(scorer: Scorer, cases: EvalCases, n_items: int, unit_vectors: np.ndarray, k: int = 10,
                batch_size: int = 1024) -> dict[str, float]:
    """Coverage@k and intra-list diversity@k of the scorer's top k (seen titles and padding excluded)."""
    shown = np.zeros(n_items + 1, dtype=bool)
    diversity = []
    for start in range(0, len(cases), batch_size):
        history = cases.history.take(np.arange(start, min(start + batch_size, len(cases))))
        scores = scorer(history).float().clone()
        mask = history_mask(history, n_items)
        mask[:, 0] = True
        scores[mask] = -torch.inf
        top = torch.topk(scores, k, dim=1).indices.numpy()
        shown[top.ravel()] = True
        vectors = unit_vectors[top]
        pairs = vectors @ vectors.transpose(0, 2, 1)
        off_diagonal = ~np.eye(k, dtype=bool)
        diversity.append(1.0 - pairs[:, off_diagonal].mean(axis=1))
    shown[0] = False
    return {f"coverage@{k}": float(shown.sum() / n_items),
            f"ild@{k}": float(np.concatenate(diversity).mean()) if diversity else 0.0}
