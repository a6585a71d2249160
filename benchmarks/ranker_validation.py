"""How the ranker's LightGBM size was chosen: validation NDCG@10 over a small grid, never the test targets.

    python benchmarks/ranker_validation.py --data ../shared/data/ml-100k --out artifacts/results/ranker-validation-movielens-100k.json
    python benchmarks/ranker_validation.py --data data/sample --out artifacts/results/ranker-validation-anime.json

The data set is prepared as benchmarks/ablation.py prepares it (same split). Each grid point is a
nostrade.ranker.TwoStage over the generators without the sequence models (ALS, item-kNN, EASE, content,
popularity: fitted once, shared by the grid), fitted on the training part and scored on the validation cases.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import ablation

from nostrade.atomic import write_json
from nostrade.evaluate import evaluate
from nostrade.ranker import FittedGenerators
from nostrade.registry import GENERATOR_MODELS, make_model
from nostrade.split import split_of

GENERATORS = ("als", "itemknn", "ease", "content", "popularity")
GRID = ((200, 31, 20), (100, 15, 50), (100, 7, 100), (200, 7, 100), (100, 15, 200))  # trees, leaves, min child


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="raw data folder (anime or MovieLens layout)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            dataset, name, _ = ablation.prepare(args.data, Path(tmp) / "processed")
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    split, generators, rows = split_of(dataset), FittedGenerators(GENERATOR_MODELS), []
    for trees, leaves, min_child in GRID:
        model = make_model("ranker", generators=GENERATORS, n_estimators=trees, num_leaves=leaves,
                           min_child_samples=min_child, fit_generator=generators).fit(dataset, split.train)
        valid = evaluate(model.score, split.valid, dataset.n_items)
        rows.append({"n_estimators": trees, "num_leaves": leaves, "min_child_samples": min_child,
                     "valid_ndcg@10": valid["ndcg@10"], "valid_hr@10": valid["hr@10"]})
        print(f"{name}: {trees} trees, {leaves} leaves, min child {min_child}: valid NDCG@10 {valid['ndcg@10']:.4f}",
              flush=True)
    write_json(args.out, {"data_set": name, "generators": GENERATORS, "rows": rows, "split": "validation",
                          "seconds": time.perf_counter() - started})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
