"""Full-catalogue ranking metrics, as ../shared/EVAL.md defines them.

Every item is scored; items in the history are excluded (the target never is); ties are broken
pessimistically (the target ranks after every item with an equal score).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from nostrade.sequences import Sequences
from nostrade.split import EvalCases, LeaveOneOut

# A scorer maps a batch of histories to scores of shape (batch, n_items + 1); column 0 is padding.
Scorer = Callable[[Sequences], torch.Tensor]
KS = (10, 20)


def history_mask(history: Sequences, n_items: int) -> torch.Tensor:
    """Boolean (batch, n_items + 1): True where the item appears in the row's history."""
    mask = torch.zeros(history.n_users, n_items + 1, dtype=torch.bool)
    mask[torch.from_numpy(history.row_of_event()), torch.from_numpy(history.iid)] = True
    return mask


def target_ranks(scores: torch.Tensor, target: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among the non-excluded items, ties counted against the target."""
    scores = scores.float().clone()
    rows = torch.arange(len(target))
    exclude = exclude.clone()
    exclude[:, 0] = True
    exclude[rows, target] = False
    scores[exclude] = -torch.inf
    target_score = scores[rows, target].unsqueeze(1)
    return ((scores >= target_score) & ~exclude).sum(dim=1)


def metrics_from_ranks(ranks: np.ndarray, ks=KS) -> dict[str, float]:
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {}
    for k in ks:
        hit = ranks <= k
        out[f"hr@{k}"] = float(hit.mean()) if len(ranks) else 0.0
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1), 0.0).mean()) if len(ranks) else 0.0
    out["mrr"] = float((1.0 / ranks).mean()) if len(ranks) else 0.0
    return out


def net_ndcg(ranks: np.ndarray, liked: np.ndarray, k: int = 10) -> float:
    """Mean over cases of +NDCG@k where the target is liked and -NDCG@k where it is disliked: a recommender gains
    by finding what the person will like and loses by finding what they will dislike (what the served function's
    settings and the feedback head's weight are chosen by, on the validation events)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    gain = np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)
    return float(np.where(liked, gain, -gain).mean()) if len(ranks) else 0.0


@torch.no_grad()
def rank_cases(scorer: Scorer, cases: EvalCases, n_items: int, batch_size: int = 1024) -> np.ndarray:
    ranks = []
    for start in range(0, len(cases), batch_size):
        rows = np.arange(start, min(start + batch_size, len(cases)))
        history = cases.history.take(rows)
        scores = scorer(history).cpu()
        target = torch.from_numpy(cases.target[rows])
        ranks.append(target_ranks(scores, target, history_mask(history, n_items)).numpy())
    return np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)


def evaluate(scorer: Scorer, cases: EvalCases, n_items: int, ks=KS, batch_size: int = 1024) -> dict[str, float]:
    metrics = metrics_from_ranks(rank_cases(scorer, cases, n_items, batch_size), ks)
    metrics["n_cases"] = len(cases)
    return metrics


def evaluate_all_targets(scorer: Scorer, split: LeaveOneOut, n_items: int, ks=KS,
                         keep_ranks: bool = False) -> dict[str, dict]:
    """Next item, next liked and next disliked item (EVAL.md), every target a held-out event.

    delta_ndcg@10 = NDCG@10(next liked) - NDCG@10(next disliked): the test events that are Like/Love against the
    held-out Dislikes (nostrade.split). ``keep_ranks``: each group also holds its per-case ``ranks`` (a list, in
    the order of the split's cases), for paired bootstrap intervals (nostrade.report)."""
    out = {}
    for name, cases in (("next_item", split.test), ("next_liked", split.test_liked),
                        ("next_disliked", split.test_disliked)):
        ranks = rank_cases(scorer, cases, n_items)
        out[name] = {**metrics_from_ranks(ranks, ks), "n_cases": len(ranks)}
        if keep_ranks:
            out[name]["ranks"] = ranks.tolist()
    out["delta_ndcg@10"] = out["next_liked"]["ndcg@10"] - out["next_disliked"]["ndcg@10"]
    return out
