"""The figures of an ablation record (benchmarks/ablation.py's JSON), for the benchmark and the notebooks alike.

    from nostrade.plots import PLOTS
    for kind, draw in PLOTS.items():
        figure = draw(record["rows"])        # matplotlib Figure; save_figure(figure, path) writes it atomically

"metrics": each row's NDCG@10 (next item, next liked) and Δ with the spread over seeds; "alpha": the α sweep of the
genre blend (α = 0 is the model alone); "by_length": NDCG@10 by the length of the test history.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from nostrade.atomic import atomic_write

BY_LENGTH_SHOWN = ("popularity", "als", "itemknn", "ease", "lightgcn", "gru4rec", "content", "sasrec")  # + the blends


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format=path.suffix[1:], dpi=110)
    plt.close(fig)


def length_labels(row: dict) -> list[str]:
    """A row's history-length buckets, shortest first (a row read back from JSON has them in key order)."""
    return sorted(row["by_length"], key=lambda label: int(label.split("-")[0].rstrip("+")))


def plot_metrics(rows: list[dict]) -> plt.Figure:
    names = [r["model"] for r in rows][::-1]
    panels = [("NDCG@10, next item", lambda r: (r["ndcg@10"], r["std"]["ndcg@10"])),
              ("NDCG@10, next liked", lambda r: (r["next_liked"]["ndcg@10"], r["std"]["next_liked_ndcg@10"])),
              ("Δ = liked − disliked NDCG@10", lambda r: (r["delta_ndcg@10"], r["std"]["delta_ndcg@10"]))]
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.35 * len(rows) + 1.5), sharey=True)
    for ax, (title, get) in zip(axes, panels):
        means, stds = zip(*(get(r) for r in rows[::-1]))
        colours = ["tab:blue" if n.startswith("sasrec") else "tab:gray" for n in names]
        ax.barh(names, means, xerr=stds, color=colours, capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(title)
    return fig


def plot_alpha(rows: list[dict]) -> plt.Figure:
    by_name = {r["model"]: r for r in rows}
    model = next((m for m in ("sasrec", "ease") if f"{m}+genre-0.0" in by_name), "sasrec")
    sweep = sorted((float(name.rsplit("-", 1)[1]), r) for name, r in by_name.items()
                   if name.startswith(f"{model}+genre-"))
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, get in (("next item", lambda r: (r["ndcg@10"], r["std"]["ndcg@10"])),
                       ("next liked", lambda r: (r["next_liked"]["ndcg@10"], r["std"]["next_liked_ndcg@10"])),
                       ("next disliked", lambda r: (r["next_disliked"]["ndcg@10"],
                                                    r["std"]["next_disliked_ndcg@10"]))):
        if sweep:
            means, stds = zip(*(get(r) for _, r in sweep))
            ax.errorbar([a for a, _ in sweep], means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xlabel("α (share of the genre cosine in the blend)")
    ax.set_ylabel("NDCG@10")
    ax.set_title(f"The served score ({model} + genre blend + dislike rules): the α sweep")
    if sweep:
        ax.legend()
    return fig


def plot_by_length(rows: list[dict]) -> plt.Figure:
    shown = [r for r in rows if r["model"] in BY_LENGTH_SHOWN or "+genre-" in r["model"]]
    labels = [label for label in length_labels(rows[0]) if rows[0]["by_length"][label]["n_cases"] > 0]
    x = np.arange(len(labels))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, 20))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, r in enumerate(shown):
        cells = [r["by_length"][label] for label in labels]
        means = [np.nan if c["ndcg@10"] is None else c["ndcg@10"] for c in cells]
        stds = [0 if c["std"] is None else c["std"] for c in cells]
        style = "-" if r["model"].startswith("sasrec") else "--"
        ax.errorbar(x, means, yerr=stds, linestyle=style, marker="o", capsize=2, color=colours[(2 * i) % 20 + i // 10],
                    label=r["model"])
    ax.set_xticks(x, [f"{label}\n(n={rows[0]['by_length'][label]['n_cases']})" for label in labels])
    ax.set_xlabel("events in the test history")
    ax.set_ylabel("NDCG@10, next item")
    ax.set_title("By history length (short histories: where the genre blend should help)")
    ax.legend(fontsize=7, ncol=2)
    return fig


PLOTS = {"metrics": plot_metrics, "alpha": plot_alpha, "by_length": plot_by_length}  # the figures of a record
