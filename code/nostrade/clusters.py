"""Taste clusters: k-means over the titles' item vectors and side features, each cluster named by its most
distinctive genres and types.

    python -m nostrade.clusters --checkpoint checkpoints/model.pt --data data/processed
        --out artifacts/clusters.json [--catalogue data/sample/anime.csv.gz]

The clustered titles are the model's vocabulary (the processed folder's items); with ``--catalogue``, every
other catalogue title joins the cluster whose centre is nearest in the side-feature part ("catalogue_size").
A title's point is its item vector beside its side features, each block standardised (scikit-learn) and scaled
to a stated share of the total variance:

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
from nostrade.sources import load_anime_catalogue

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


@dataclass(frozen=True)
class SideFeatures:
    """The side-feature encoding of the model's titles (their genres, types and members quartiles), applied the
    same way to any catalogue rows; a column the catalogue lacks is left out."""
    genres: tuple[str, ...]
    types: tuple[str, ...] | None
    members_edges: tuple[float, ...] | None
    episode_buckets: tuple[int, ...] | None  # the EPISODE_EDGES buckets the model's titles fall in

    @classmethod
    def fit(cls, items: pd.DataFrame) -> "SideFeatures":
        members = np.log1p(items["members"].fillna(0).to_numpy(np.float64)) if "members" in items else None
        return cls(tuple(sorted({g for genres in items["genres"] for g in genres})),
                   tuple(sorted(types(items).unique())) if "type" in items else None,
                   None if members is None else tuple(np.quantile(members, [0.25, 0.5, 0.75])),
                   tuple(np.unique(episode_bucket(items)).tolist()) if "episodes" in items else None)

    def blocks(self, items: pd.DataFrame) -> dict[str, np.ndarray]:
        """Block name -> (rows, columns) 0/1 matrix."""
        def one_hot(codes, categories) -> np.ndarray:
            return (np.asarray(codes)[:, None] == np.asarray(categories)[None]).astype(np.float32)

        binarizer = MultiLabelBinarizer(classes=self.genres)
        blocks = {"genre": binarizer.fit_transform([[g for g in genres if g in self.genres]
                                                    for genres in items["genres"]]).astype(np.float32)}
        if self.types is not None:
            blocks["type"] = one_hot(types(items), self.types)
        if self.episode_buckets is not None:
            blocks["episodes"] = one_hot(episode_bucket(items), self.episode_buckets)
        if self.members_edges is not None:
            members = np.log1p(items["members"].fillna(0).to_numpy(np.float64))
            blocks["members"] = one_hot(np.digitize(members, self.members_edges), np.arange(4))
        return blocks


def types(items: pd.DataFrame) -> pd.Series:
    return items["type"].fillna("unknown").astype(str)


def episode_bucket(items: pd.DataFrame) -> np.ndarray:
    return np.digitize(items["episodes"].fillna(0).to_numpy(), EPISODE_EDGES)


def points(vectors: np.ndarray, items: pd.DataFrame, side: SideFeatures, cfg: ClusterConfig,
           others: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's titles as points: each block standardised column by column (on these titles), then scaled so
    that its total variance is its weight; and the side-feature part of the same points for ``others``
    (catalogue titles without an item vector), encoded and scaled alike."""
    blocks = {"vector": vectors, **side.blocks(items)}
    other_blocks = side.blocks(others) if others is not None else {}
    scaled, other_scaled = [], []
    for name, block in blocks.items():
        scaler, weight = StandardScaler().fit(block), np.sqrt(getattr(cfg, f"{name}_weight") / block.shape[1])
        scaled.append(scaler.transform(block) * weight)
        if name in other_blocks:
            other_scaled.append(scaler.transform(other_blocks[name]) * weight)
    return (np.hstack(scaled).astype(np.float64),
            np.hstack(other_scaled).astype(np.float64) if others is not None else None)


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


def cluster_titles(vectors: np.ndarray, items: pd.DataFrame, popularity: np.ndarray, cfg: ClusterConfig,
                   catalogue: pd.DataFrame | None = None) -> dict:
    """Item vectors (titles, d), the items table (same row order) and each title's popularity -> clusters.json's
    content (without the provenance main adds). ``catalogue``: every title; those without an item vector join
    the cluster whose centre is nearest in the side-feature part ("catalogue_size")."""
    others = None if catalogue is None else catalogue[~catalogue["anime_id"].isin(items["anime_id"])]
    side = SideFeatures.fit(items)
    x, x_others = points(vectors, items, side, cfg, others)
    kmeans, scores = choose_k(x, cfg)
    k, labels = kmeans.n_clusters, kmeans.labels_
    blocks = side.blocks(items)
    terms = np.hstack([blocks["genre"], blocks.get("type", np.zeros((len(items), 0), np.float32))])
    genre_names = list(side.genres)
    names = genre_names + list(side.types or ())
    tfidf, share = term_tfidf(terms, labels, k)
    n_genres = len(genre_names)
    joined = np.zeros(k, np.int64)
    if others is not None and len(others):
        side_centres = kmeans.cluster_centers_[:, vectors.shape[1]:]
        nearest = ((x_others[:, None, :] - side_centres[None]) ** 2).sum(axis=2).argmin(axis=1)
        joined = np.bincount(nearest, minlength=k)
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
            **({"catalogue_size": int(len(members) + joined[c])} if others is not None else {}),
            "top_genres": [{"genre": genre_names[g], "weight": round(float(tfidf[c, g]), 4),
                            "share": round(float(share[c, g]), 4)} for g in top_genres if tfidf[c, g] > 0],
            "genre_tfidf": {genre_names[g]: round(float(tfidf[c, g]), 4) for g in range(n_genres) if share[c, g] > 0},
            "representatives": [{"iid": int(items["iid"].iloc[i]), "anime_id": int(items["anime_id"].iloc[i]),
                                 "name": str(items["name"].iloc[i])} for i in picked],
        })
    return {"k": k, "criterion": {"name": "silhouette", "k_range": [cfg.k_min, cfg.k_max],
                                  "sample": min(cfg.silhouette_sample, len(x)), "seed": cfg.seed,
                                  "scores": {str(kk): round(s, 4) for kk, s in scores.items()}},
            "n_titles": int(len(items)),
            **({"n_catalogue": int(len(items) + len(others))} if others is not None else {}),
            "clusters": clusters}


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
    """clusters.json -> the app's "Browse by taste" rows: {"name", "size", "catalogue_size" (None when the
    clusters were made without the catalogue), "anime_ids"} per cluster, largest first. ValueError (one line,
    naming the file) when it is not a clusters file or was made for other data."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        if record["iid_map_sha256"] != iid_map_sha256:
            raise ValueError(f"{path}: made for other data (iid map {record['iid_map_sha256'][:12]}…, the data in "
                             f"use has {iid_map_sha256[:12]}…); run `python -m nostrade.clusters` again")
        rows = [{"name": str(c["name"]), "size": int(c["size"]), "catalogue_size": c.get("catalogue_size"),
                 "anime_ids": [int(r["anime_id"]) for r in c["representatives"]]} for c in record["clusters"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a readable clusters file ({type(e).__name__}: {e})") from None
    return sorted(rows, key=lambda r: -r["size"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="checkpoints/model.pt", help="served model checkpoint")
    parser.add_argument("--data", default="data/processed", help="processed folder (make_processed_data.py)")
    parser.add_argument("--out", default="artifacts/clusters.json", help="clusters JSON (written atomically)")
    parser.add_argument("--catalogue", help="the full anime catalogue (e.g. data/sample/anime.csv.gz): its titles "
                                            "outside the model's vocabulary join the nearest cluster by side features")
    defaults = ClusterConfig()
    parser.add_argument("--k-min", type=int, default=defaults.k_min)
    parser.add_argument("--k-max", type=int, default=defaults.k_max)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    try:
        cfg = ClusterConfig(k_min=args.k_min, k_max=args.k_max, seed=args.seed)
        dataset = load_dataset(args.data)
        vectors, source = item_vectors(Path(args.checkpoint), dataset, cfg.seed)
        catalogue = load_anime_catalogue(args.catalogue) if args.catalogue else None
        record = cluster_titles(vectors, dataset.items, popularity_of(dataset), cfg, catalogue)
        record = {**record, "item_vectors": source, "data": str(args.data), "iid_map_sha256": dataset.iid_map_hash,
                  "config": asdict(cfg), "command": " ".join(["python -m nostrade.clusters", *(argv or sys.argv[1:])])}
        write_json(args.out, record)
    except (FileNotFoundError, ValueError, CheckpointError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{c['name']} ({c['size']}" + (f", {c['catalogue_size']} in the catalogue)"
                                                     if "catalogue_size" in c else ")") for c in record["clusters"])
    print(f"k = {record['k']} (best silhouette {record['criterion']['scores'][str(record['k'])]:.3f} over "
          f"k {cfg.k_min}..{cfg.k_max}); {sizes}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
