"""Per-seed results of a model -> mean ± std over the seeds (the benchmarks' rows), and paired bootstrap intervals
of the lift of one row over another."""
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


# ---- paired, user-level bootstrap intervals of a lift (EVAL.md "Lifts") -------------------------------------

LIFTS = {  # statistic -> {target group: sign}: what a lift of model A over model B is measured on
    "ndcg@10": {"next_item": 1.0},
    "next_liked": {"next_liked": 1.0},
    "delta": {"next_liked": 1.0, "next_disliked": -1.0},
}


def case_ndcg(ranks, k: int = 10) -> np.ndarray:
    """Per-case NDCG@k of 1-based target ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks <= k, 1.0 / np.log2(ranks + 1), 0.0)


def seed_mean_ndcg(row: dict, target: str, k: int = 10) -> np.ndarray:
    """A results row's per-case NDCG@k of one target group, averaged over its seeds (the per-seed ``ranks``)."""
    return np.mean([case_ndcg(r[target]["ranks"], k) for r in row["per_seed"]], axis=0)


def paired_bootstrap(diff: dict[str, np.ndarray], users: dict[str, np.ndarray], groups: dict[str, float],
                     n_users: int, n_resamples: int = 2000, seed: int = 0) -> dict:
    """The 95% interval of sum over ``groups`` of sign · mean(diff[group]) when users are resampled with
    replacement (every case of a drawn user counts once per draw; a draw without a case of some group is left out): ``diff[g]`` is A's per-case value minus B's on
    the same cases, ``users[g]`` the user of each case (0..n_users-1). A lift whose interval holds 0 is a tie."""
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=n_resamples).astype(np.float64)
    statistic, point = np.zeros(n_resamples), 0.0
    for group, sign in groups.items():
        weights = draws[:, users[group]]
        total = weights.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):  # a draw without a user of the group: left out
            statistic += sign * np.where(total > 0, (weights @ diff[group]) / total, np.nan)
        point += sign * float(diff[group].mean()) if len(diff[group]) else 0.0
    low, high = np.nanpercentile(statistic, [2.5, 97.5])
    return {"diff": point, "low": float(low), "high": float(high), "tie": bool(low <= 0.0 <= high)}


def lift(a: dict, b: dict, users: dict[str, np.ndarray], n_users: int, statistic: str = "ndcg@10") -> dict:
    """The paired bootstrap interval of row ``a`` minus row ``b`` (results rows with per-seed ranks, scored on the
    same cases; ``users``: the user of each case per target group) on a LIFTS statistic."""
    groups = LIFTS[statistic]
    diff = {g: seed_mean_ndcg(a, g) - seed_mean_ndcg(b, g) for g in groups}
    return {"a": a["model"], "b": b["model"], "statistic": statistic,
            **paired_bootstrap(diff, {g: np.asarray(users[g]) for g in groups}, groups, n_users)}


def lift_text(result: dict, digits: int = 4) -> str:
    """'+0.0123 [+0.0050, +0.0190]', or the same followed by ' (tie)' when the interval holds 0."""
    text = f"{result['diff']:+.{digits}f} [{result['low']:+.{digits}f}, {result['high']:+.{digits}f}]"
    return text + (" (tie)" if result["tie"] else "")


# ---- markdown: the tables the ablation files, the README and notebook 02 show ----------------------------------

def pm(mean: float, std: float, digits: int = 4) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def headline_markdown(rows: list[dict]) -> str:
    """Results rows (summarise's) as a markdown table of the EVAL.md targets, mean ± std over their seeds."""
    lines = ["| model | NDCG@10 | HR@10 | NDCG@10 next liked | NDCG@10 next disliked (lower is better) | Δ |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        s = r["std"]
        lines.append(f"| {r['model']} | {pm(r['ndcg@10'], s['ndcg@10'])} | {pm(r['hr@10'], s['hr@10'])} | "
                     f"{pm(r['next_liked']['ndcg@10'], s['next_liked_ndcg@10'])} | "
                     f"{pm(r['next_disliked']['ndcg@10'], s['next_disliked_ndcg@10'])} | "
                     f"{r['delta_ndcg@10']:+.4f} ± {s['delta_ndcg@10']:.4f} |")
    return "\n".join(lines)


def lifts_markdown(results: list[dict]) -> str:
    """Lifts (ablation's ``lifts``: A, B and a ``lift`` per LIFTS statistic) as a markdown table."""
    lines = ["| A | B | NDCG@10 next item | NDCG@10 next liked | Δ |", "|---|---|---|---|---|"]
    lines += [f"| {r['a']} | {r['b']} | " + " | ".join(lift_text(r[stat]) for stat in LIFTS) + " |" for r in results]
    return "\n".join(lines)
