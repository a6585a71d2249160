"""Taste clusters: k-means over the titles' item vectors and side features, each cluster named by its most
distinctive genres and types.

    python -m nostrade.clusters --checkpoint checkpoints/model.pt --data data/processed --out artifacts/clusters.json

The titles are the model's vocabulary (the processed folder's items). A title's point is its item vector beside
its side features, each block standardised (scikit-learn) and scaled to a stated share of the total variance:

- item vectors: a SASRec checkpoint's learned item embeddings; any other checkpoint (EASE, the ranker) has no
  learned item table of its own, so ALS factors (nostrade.baselines.als, seeded) fitted on every event of the
  processed folder stand in (clusters.json says which);
- genres multi-hot; type one-hot; episode-count and members buckets, where the catalogue has those columns.

k: the best silhouette (scikit-learn, on a seeded sample of the titles) over ``k_min..k_max``. Names: TF-IDF
over the members' genres and types, titles being the documents: a term's weight in a cluster is the share of
its members that carry it times log(titles / titles that carry it), and 0 where the term is not over-represented
(a share under NAME_LIFT times its share among all titles); so a genre on every title, or one spread evenly over
the clusters, names none. A cluster is named by its top terms. Representative titles: the most popular
(members, else events) among the half of the cluster nearest its centre.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import MultiLabelBinarizer, StandardScaler

from nostrade.atomic import WriteError, write_json
from nostrade.baselines.als import ALS
from nostrade.checkpoint import CheckpointError, load_checkpoint
from nostrade.dataset import Dataset, load_dataset

EPISODE_EDGES = (1, 2, 14, 27, 53)  # buckets: unknown (0), 1, 2-13, 14-26, 27-52, 53+
NAME_TERMS = 3
NAME_LIFT = 1.2  # a term weighs in a cluster only where its share is at least this times its share of all titles


@dataclass(frozen=True)
class ClusterConfig:
    k_min: int = 6
    k_max: int = 20
    seed: int = 0
    silhouette_sample: int = 2000  # titles the silhouette is measured on (seeded sample)
    n_init: int = 10  # k-means restarts
    # each block's share of the total variance (relative; a block the catalogue lacks is left out)
    vector_weight: float = 2.0
    genre_weight: float = 1.0
    type_weight: float = 0.5
    episodes_weight: float = 0.25
    members_weight: float = 0.25
    n_representatives: int = 8
    n_top_genres: int = 5

    def __post_init__(self):
        if not 2 <= self.k_min <= self.k_max:
            raise ValueError(f"k range: need 2 <= k_min ({self.k_min}) <= k_max ({self.k_max})")


def genre_multihot(items: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    binarizer = MultiLabelBinarizer()
    matrix = binarizer.fit_transform([list(g) for g in items["genres"]])
    return matrix.astype(np.float32), list(binarizer.classes_)


def side_features(items: pd.DataFrame) -> dict[str, np.ndarray]:
    """Block name -> (titles, columns) indicator matrix, for the side features the catalogue has."""
    def one_hot(codes) -> np.ndarray:
        return pd.get_dummies(pd.Series(codes).astype(str)).to_numpy(np.float32)

    blocks = {"genre": genre_multihot(items)[0]}
    if "type" in items:
        blocks["type"] = one_hot(items["type"].fillna("unknown"))
    if "episodes" in items:
        blocks["episodes"] = one_hot(np.digitize(items["episodes"].fillna(0).to_numpy(), EPISODE_EDGES))
    if "members" in items:
        members = np.log1p(items["members"].fillna(0).to_numpy(np.float64))
        blocks["members"] = one_hot(np.digitize(members, np.quantile(members, [0.25, 0.5, 0.75])))
    return blocks


def points(vectors: np.ndarray, items: pd.DataFrame, cfg: ClusterConfig) -> np.ndarray:
    """Each block standardised column by column, then scaled so that its total variance is its weight."""
    blocks = {"vector": vectors, **side_features(items)}
    weights = {name: getattr(cfg, f"{name}_weight") for name in blocks}
    scaled = [StandardScaler().fit_transform(block) * np.sqrt(weights[name] / block.shape[1])
              for name, block in blocks.items()]
    return np.hstack(scaled).astype(np.float64)


def choose_k(x: np.ndarray, cfg: ClusterConfig) -> tuple[KMeans, dict[int, float]]:
    """The k-means with the best silhouette over k_min..k_max (ties: the smaller k), and every k's silhouette."""
    ks = range(cfg.k_min, min(cfg.k_max, len(x) - 1) + 1)
    if not ks:
        raise ValueError(f"k range: {cfg.k_min}..{cfg.k_max} needs more than {len(x)} titles")
    fits, scores = {}, {}
    for k in ks:
        fits[k] = KMeans(n_clusters=k, n_init=cfg.n_init, random_state=cfg.seed).fit(x)
        scores[k] = float(silhouette_score(x, fits[k].labels_, sample_size=min(cfg.silhouette_sample, len(x)),
                                           random_state=cfg.seed))
    return fits[max(scores, key=lambda k: (scores[k], -k))], scores


def term_tfidf(terms: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(titles, terms) 0/1 -> (k, terms) TF-IDF of each cluster (module docstring: 0 where the term is not
    over-represented), and the (k, terms) shares."""
    share = np.vstack([terms[labels == c].mean(axis=0) for c in range(k)])
    overall = terms.mean(axis=0)
    idf = np.log(1 / np.maximum(overall, 1 / len(terms)))
    return np.where(share >= NAME_LIFT * overall, share * idf, 0.0), share


def cluster_name(genres: list[str], types: list[str]) -> str:
    """A cluster's top terms -> "Genre · Genre (Type)" (the genre "Music" and the type "Music" are two terms)."""
    return " · ".join(genres or ["mixed"]) + (f" ({', '.join(types)})" if types else "")


def representatives(x: np.ndarray, centre: np.ndarray, popularity: np.ndarray, n: int) -> np.ndarray:
    """Positions (into ``x``'s rows) of the ``n`` most popular among the half nearest ``centre``."""
    distance = np.linalg.norm(x - centre, axis=1)
    near = np.flatnonzero(distance <= np.median(distance))
    return near[np.lexsort((near, -popularity[near]))][:n]


def cluster_titles(vectors: np.ndarray, items: pd.DataFrame, popularity: np.ndarray, cfg: ClusterConfig) -> dict:
    """Item vectors (titles, d), the items table (same row order) and each title's popularity -> clusters.json's
    content (without the provenance main adds)."""
    x = points(vectors, items, cfg)
    kmeans, scores = choose_k(x, cfg)
    k, labels = kmeans.n_clusters, kmeans.labels_
    genres, genre_names = genre_multihot(items)
    types = pd.get_dummies(items["type"].fillna("unknown").astype(str)) if "type" in items else pd.DataFrame()
    terms = np.hstack([genres, types.to_numpy(np.float32)])
    names = genre_names + list(types.columns)
    tfidf, share = term_tfidf(terms, labels, k)
    n_genres = len(genre_names)
    clusters = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        top_terms = np.argsort(-tfidf[c], kind="stable")[:NAME_TERMS]
        top_genres = np.argsort(-tfidf[c, :n_genres], kind="stable")[:cfg.n_top_genres]
        picked = members[representatives(x[members], kmeans.cluster_centers_[c], popularity[members],
                                         cfg.n_representatives)]
        clusters.append({
            "id": c,
            "name": cluster_name([names[t] for t in top_terms if t < n_genres and tfidf[c, t] > 0],
                                 [names[t] for t in top_terms if t >= n_genres and tfidf[c, t] > 0]),
            "size": int(len(members)),
            "top_genres": [{"genre": genre_names[g], "weight": round(float(tfidf[c, g]), 4),
                            "share": round(float(share[c, g]), 4)} for g in top_genres if tfidf[c, g] > 0],
            "genre_tfidf": {genre_names[g]: round(float(tfidf[c, g]), 4) for g in range(n_genres) if share[c, g] > 0},
            "representatives": [{"iid": int(items["iid"].iloc[i]), "anime_id": int(items["anime_id"].iloc[i]),
                                 "name": str(items["name"].iloc[i])} for i in picked],
        })
    return {"k": k, "criterion": {"name": "silhouette", "k_range": [cfg.k_min, cfg.k_max],
                                  "sample": min(cfg.silhouette_sample, len(x)), "seed": cfg.seed,
                                  "scores": {str(kk): round(s, 4) for kk, s in scores.items()}},
            "n_titles": int(len(items)), "clusters": clusters}


def item_vectors(checkpoint: Path, dataset: Dataset, seed: int) -> tuple[np.ndarray, str]:
    """(n_items, d) vectors in iid order (padding row dropped) and where they come from (module docstring)."""
    model = load_checkpoint(checkpoint, dataset.iid_map_hash, dataset.n_items).model
    if model.kind == "sasrec":
        return model.item_vectors()[1:], f"learned item embeddings of the SASRec checkpoint {checkpoint}"
    als = ALS(seed=seed).fit(dataset, dataset.sequences)
    return als.model.item_factors[1:], (f"ALS factors (nostrade.baselines.als defaults, seed {seed}) fitted on "
                                        f"every event of the data: the {model.kind} checkpoint {checkpoint} "
                                        "has no learned item table")


def popularity_of(dataset: Dataset) -> np.ndarray:
    if "members" in dataset.items:
        return dataset.items["members"].fillna(0).to_numpy(np.float64)
    events = np.bincount(dataset.sequences.iid, minlength=dataset.n_items + 1)[1:]
    return events.astype(np.float64)


def taste_rows(path: str | Path, iid_map_sha256: str) -> list[dict]:
    """clusters.json -> the app's "Browse by taste" rows: {"name", "size", "anime_ids"} per cluster, largest
    first. ValueError (one line, naming the file) when it is not a clusters file or was made for other data."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        if record["iid_map_sha256"] != iid_map_sha256:
            raise ValueError(f"{path}: made for other data (iid map {record['iid_map_sha256'][:12]}…, the data in "
                             f"use has {iid_map_sha256[:12]}…); run `python -m nostrade.clusters` again")
        rows = [{"name": str(c["name"]), "size": int(c["size"]),
                 "anime_ids": [int(r["anime_id"]) for r in c["representatives"]]} for c in record["clusters"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a readable clusters file ({type(e).__name__}: {e})") from None
    return sorted(rows, key=lambda r: -r["size"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="checkpoints/model.pt", help="served model checkpoint")
    parser.add_argument("--data", default="data/processed", help="processed folder (make_processed_data.py)")
    parser.add_argument("--out", default="artifacts/clusters.json", help="clusters JSON (written atomically)")
    defaults = ClusterConfig()
    parser.add_argument("--k-min", type=int, default=defaults.k_min)
    parser.add_argument("--k-max", type=int, default=defaults.k_max)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    try:
        cfg = ClusterConfig(k_min=args.k_min, k_max=args.k_max, seed=args.seed)
        dataset = load_dataset(args.data)
        vectors, source = item_vectors(Path(args.checkpoint), dataset, cfg.seed)
        record = cluster_titles(vectors, dataset.items, popularity_of(dataset), cfg)
        record = {**record, "item_vectors": source, "data": str(args.data), "iid_map_sha256": dataset.iid_map_hash,
                  "config": asdict(cfg), "command": " ".join(["python -m nostrade.clusters", *(argv or sys.argv[1:])])}
        write_json(args.out, record)
    except (FileNotFoundError, ValueError, CheckpointError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{c['name']} ({c['size']})" for c in record["clusters"])
    print(f"k = {record['k']} (best silhouette {record['criterion']['scores'][str(record['k'])]:.3f} over "
          f"k {cfg.k_min}..{cfg.k_max}); {sizes}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
