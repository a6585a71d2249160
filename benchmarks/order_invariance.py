"""Does each servable model answer to taste or to click order? Order invariance and neighbour quality.

    python benchmarks/order_invariance.py --out artifacts/bench/order_invariance.json [--rows ease ranker sasrec]
    python benchmarks/order_invariance.py --checkpoint PT --data DIR --out FILE.json       (one model)

No --checkpoint: every servable model of the embedded sample, each reported separately under "rows" with its own
``top10_overlap`` (target >= 0.9 each): ``ease`` (checkpoints/ease.pt), ``ranker`` (checkpoints/ranker.pt, auto's
generators) and ``sasrec`` (checkpoints/sasrec.pt, the set model where the order is not time), each trained on
data/processed (prepared first) where its file is absent; "served" names the kind --model auto chose there
(artifacts/metrics.json), when it was trained.

- ``top10_overlap``: for --users test users (the data set's own split, nostrade.split), their history in
  --orders random orders (seeded), each served by predict.Recommender.recommend (k=10, the default α); the mean
  share of each order's top 10 found in the first order's top 10. 1 = the click order does not matter.
- ``neighbour_id_distance_ratio``: in the item space that serves ``similar``, explanations and the dislike penalty,
  the median distance in source-id order (iid order: ids ascending) between a title and its 10 nearest neighbours,
  divided by the median for random pairs. Near 0: neighbours are id neighbours (a model that learned the file
  order); near 1: the space ignores id order.
- ``neighbour_genre_jaccard``: the mean genre Jaccard between a title and those neighbours, beside item-kNN's
  (nostrade.baselines.ItemKNN on the training part: titles the same people rate alike).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import predict
import served
from nostrade.baselines import ItemKNN
from nostrade.atomic import write_json as write_json_atomic
from nostrade.history import as_events, training_events
from nostrade.split import split_of

REPO = Path(__file__).resolve().parents[1]
NEIGHBOURS = 10
ROWS = ("ease", "ranker", "sasrec")


def nearest(unit: np.ndarray, k: int) -> np.ndarray:
    """(n, k) rows of each row's k most similar other rows (cosine of unit rows)."""
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return predict.top_k(similarity, k)


def neighbour_quality(neighbours: np.ndarray, genres: list[set], seed: int) -> dict:
    """Median id-order distance to the neighbours over that of random pairs; mean genre Jaccard."""
    n = len(neighbours)
    rows = np.repeat(np.arange(n), neighbours.shape[1])
    cols = neighbours.ravel()
    random = np.random.default_rng(seed).integers(0, n, size=(2, len(rows)))
    random = random[:, random[0] != random[1]]
    jaccard = [len(genres[a] & genres[b]) / max(len(genres[a] | genres[b]), 1) for a, b in zip(rows, cols)]
    return {"neighbour_id_distance_ratio": float(np.median(np.abs(rows - cols)) / np.median(np.abs(random[0] - random[1]))),
            "neighbour_genre_jaccard": float(np.mean(jaccard))}


def top10_overlap(rec: predict.Recommender, users: int, orders: int, seed: int) -> tuple[float, int]:
    rng = np.random.default_rng(seed)
    dataset = rec.dataset
    test = split_of(dataset).test
    chosen = np.sort(rng.choice(len(test), size=min(users, len(test)), replace=False))
    frame = training_events(dataset, test.history.take(chosen), dataset.user_ids[test.users[chosen]])
    overlaps = []
    for _, user in frame.groupby("user_id", sort=False):
        events = [(a, f) for a, f, _ in as_events(user)]  # the order given is the order clicked
        tops = [set(rec.recommend([events[i] for i in rng.permutation(len(events))], k=10, explain=False)
                    .item_columns["item_id"].tolist()) for _ in range(orders)]
        overlaps += [len(top & tops[0]) / max(len(tops[0]), 1) for top in tops[1:]]
    return float(np.mean(overlaps)), len(chosen)


def measure(checkpoint: Path, data: Path, args: argparse.Namespace) -> dict:
    rec = predict.Recommender.load(checkpoint, data)
    overlap, n_users = top10_overlap(rec, args.users, args.orders, args.seed)
    dataset = rec.dataset
    genres = [set(g) for g in dataset.items["genres"].map(lambda g: [] if g is None else list(g))]
    quality = neighbour_quality(nearest(rec.scoring.item_unit[1:], NEIGHBOURS), genres, args.seed)
    knn = ItemKNN(neighbours=50).fit(dataset, split_of(dataset).train).similarity[1:, 1:].toarray()
    knn_quality = neighbour_quality(predict.top_k(knn + np.diag(np.full(len(knn), -np.inf)), NEIGHBOURS), genres,
                                    args.seed)
    print(f"{rec.model.kind}: top-10 overlap across {args.orders} click orders of {n_users} histories: {overlap:.3f} "
          f"(target >= 0.9); neighbours (its item space): id-distance ratio "
          f"{quality['neighbour_id_distance_ratio']:.3f} (target >= 0.5), genre Jaccard "
          f"{quality['neighbour_genre_jaccard']:.3f} (item-kNN {knn_quality['neighbour_genre_jaccard']:.3f})",
          flush=True)
    return {"top10_overlap": overlap, **quality, "itemknn": knn_quality, "users": n_users,
            "checkpoint": str(checkpoint), "data": str(data), "order_is_time": dataset.order_is_time,
            "model": rec.describe()["model"]}


def row_model(row: str) -> tuple[Path, Path]:
    if row == "ranker":
        return served.ranker_model()
    path = served.REPO / "checkpoints" / f"{row}.pt"
    return served.trained(path, served.DATA, served.REPO / "artifacts" / f"metrics-{row}.json", "--model", row)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench" / "order_invariance.json")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS), help="models without --checkpoint")
    parser.add_argument("--checkpoint", type=Path, help="measure this checkpoint alone (with --data)")
    parser.add_argument("--data", type=Path, help="the processed folder it was trained on")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--orders", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (args.checkpoint is None) != (args.data is None):
        print("error: give both --checkpoint and --data, or neither (every servable model)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    predict.use_threads(1)
    rows = {}
    try:
        for row in [str(args.checkpoint)] if args.checkpoint else args.rows:
            rows[row] = measure(*((args.checkpoint, args.data) if args.checkpoint else row_model(row)), args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    default_run = REPO / "artifacts" / "metrics.json"
    result = {"rows": rows, "served": json.loads(default_run.read_text())["model"] if default_run.exists() else None,
              "targets": {"top10_overlap": 0.9, "neighbour_id_distance_ratio": 0.5,
                          "neighbour_genre_jaccard": "at least item-kNN's"},
              "orders": args.orders, "seed": args.seed, "seconds": time.perf_counter() - started}
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
