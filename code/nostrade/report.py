"""Per-seed results of a model -> mean ± std over the seeds (the benchmarks' rows)."""
from __future__ import annotations

import numpy as np

METRICS = ("ndcg@10", "hr@10", "ndcg@20", "hr@20", "mrr")
OTHER_TARGETS = ("next_liked", "next_disliked")
SCALARS = ("delta_ndcg@10", "fit_seconds", "seconds_to_best", "best_epoch", "epochs", "coverage@10", "ild@10",
           "candidate_recall")


def mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std())


def summarise(per_seed: list[dict], target: str = "next_item") -> dict:
    """Mean over the seeds, the spread (population std) beside it under "std".

    Each result holds ``seed`` and the metrics of ``target`` (nostrade.evaluate), which go to the top level;
    when the results have them, ``next_liked`` / ``next_disliked`` stay nested (std as "next_liked_ndcg@10"),
    ``by_length`` cells get their own "std", and the SCALARS are averaged too."""
    first = per_seed[0]
    row, std = {}, {}
    for k in METRICS:
        row[k], std[k] = mean_std([r[target][k] for r in per_seed])
    for name in (t for t in OTHER_TARGETS if t in first):
        row[name] = {"n_cases": first[name]["n_cases"]}
        for k in METRICS:
            row[name][k], std[f"{name}_{k}"] = mean_std([r[name][k] for r in per_seed])
    if "by_length" in first:
        row["by_length"] = {}
        for label, cell in first["by_length"].items():
            mean, spread = (None, None) if cell["ndcg@10"] is None else \
                mean_std([r["by_length"][label]["ndcg@10"] for r in per_seed])
            row["by_length"][label] = {"ndcg@10": mean, "std": spread, "n_cases": cell["n_cases"]}
    for k in (k for k in SCALARS if any(k in r for r in per_seed)):  # over the seeds that have it (older runs may not)
        row[k], std[k] = mean_std([r[k] for r in per_seed if k in r])
    return {**row, "n_cases": first[target]["n_cases"], "std": std, "seeds": [r["seed"] for r in per_seed],
            "per_seed": per_seed}
