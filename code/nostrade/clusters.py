"""Taste clusters: k-means over the titles' item vectors and genres (format only nudges), each cluster named
by the genres most of its titles share.

    python -m nostrade.clusters --checkpoint checkpoints/model.pt --data data/processed
        --out artifacts/clusters.json [--catalogue data/sample/anime.csv.gz]

The clustered titles are the model's vocabulary (the processed folder's items); with ``--catalogue``, every
other catalogue title joins the cluster whose centre is nearest in the side-feature part ("catalogue_size").
A title's point is its item vector beside its side features, each block standardised (scikit-learn) and scaled
to a stated share of the total variance (ClusterConfig: vectors and genres carry it; type, episodes, members
only nudge, so that the clusters are of taste, not of format):

- item vectors: a SASRec checkpoint's learned item embeddings; any other checkpoint (EASE, the ranker) has no
  learned item table of its own, so ALS factors (nostrade.baselines.als, seeded) fitted on every event of the
  processed folder stand in (clusters.json says which);
- genres multi-hot; type one-hot; episode-count and members buckets, where the catalogue has those columns.

k: the best silhouette (scikit-learn, on a seeded sample of the titles) over ``k_min..k_max``. Representative
titles: the most popular (members, else events) among the half of the cluster nearest its centre; the page shows
the first N_SHOWN that pass its filters. Names: the genres ranked by TF-IDF (titles being the documents: a genre's
weight in a cluster is the share of its members that carry it times log(titles / titles that carry it), and 0
where it is not over-represented, a share under NAME_LIFT times its share among all titles), kept while the
titles carrying every kept genre are at least NAME_MIN_SHARE of the cluster and of its first N_SHOWN
representatives (``name_check`` in the file holds both shares); a cluster whose titles share no genre that widely
is named after its best-known title. No adult-genre label on mainstream titles: a genre names a cluster only where
most of its titles carry it.

The app reads the file through ``taste_rows``, which checks it like a checkpoint: a value of the wrong kind, a
non-finite number, an id out of range, more than MAX_CLUSTERS clusters or MAX_REPRESENTATIVES titles in one, or
a file that is not UTF-8 JSON is refused with a one-line reason naming the file.
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
from nostrade.checkpoint import CheckpointError
from nostrade.dataset import Dataset, load_dataset
from nostrade.registry import load_checkpoint
from nostrade.sources import load_anime_catalogue

EPISODE_EDGES = (1, 2, 14, 27, 53)  # buckets: unknown (0), 1, 2-13, 14-26, 27-52, 53+
NAME_TERMS = 3
NAME_MIN_SHARE = 0.6  # a named genre holds for at least this share of the cluster and of the titles shown
N_SHOWN = 5  # titles of a cluster the page shows first (its best representatives)
NAME_LIFT = 1.2  # a term weighs in a cluster only where its share is at least this times its share of all titles


@dataclass(frozen=True)
class ClusterConfig:
    k_min: int = 6
    k_max: int = 20
    seed: int = 0
    silhouette_sample: int = 2000  # titles the silhouette is measured on (seeded sample)
    n_init: int = 10  # k-means restarts
    # each block's share of the total variance (relative; a block the catalogue lacks is left out)
    # Taste, not format: the item vectors and genres carry the clusters; type, episodes and members only
    # nudge (at 0.5 / 0.25 / 0.25 the clusters were format groups: "(OVA)", "(Movie)", "(Special)").
    vector_weight: float = 2.0
    genre_weight: float = 2.0
    type_weight: float = 0.1
    episodes_weight: float = 0.05
    members_weight: float = 0.05
    n_representatives: int = 30  # enough left after the page's filters and the titles it already shows
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


def name_genres(candidates: np.ndarray, members: np.ndarray, shown: np.ndarray) -> list[int]:
    """A cluster's name: up to NAME_TERMS of ``candidates`` (genre columns, most distinctive first), each kept only
    where the titles carrying every kept genre are at least NAME_MIN_SHARE of the cluster (``members``, 0/1
    (titles, genres)) and of the titles it shows first (``shown``): a name that holds for most of what it names."""
    chosen: list[int] = []
    for genre in candidates.tolist():
        trial = chosen + [genre]
        if min(carry_share(members, trial), carry_share(shown, trial)) >= NAME_MIN_SHARE:
            chosen = trial
        if len(chosen) == NAME_TERMS:
            break
    return chosen


def carry_share(genre_rows: np.ndarray, genres: list[int]) -> float:
    """The share of the rows (titles' 0/1 genre rows) that carry every one of ``genres``."""
    return float(genre_rows[:, genres].all(axis=1).mean()) if len(genre_rows) else 0.0


def cluster_name(genres: list[str], best_known: str) -> str:
    """"Genre · Genre"; a cluster whose titles share no genre widely enough is named by its best-known title."""
    return " · ".join(genres) if genres else f"Watched with {best_known}"


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
    others = None if catalogue is None else catalogue[~catalogue["item_id"].isin(items["item_id"])]
    if others is not None and others.empty:
        raise ValueError(f"--catalogue: all of its {len(catalogue):,} titles are in the model's vocabulary: nothing to "
                         "add (leave --catalogue out)")
    side = SideFeatures.fit(items)
    x, x_others = points(vectors, items, side, cfg, others)
    kmeans, scores = choose_k(x, cfg)
    k, labels = kmeans.n_clusters, kmeans.labels_
    genre_rows = side.blocks(items)["genre"]
    genre_names = list(side.genres)
    tfidf, share = term_tfidf(genre_rows, labels, k)
    joined = np.zeros(k, np.int64)
    if others is not None:
        side_centres = kmeans.cluster_centers_[:, vectors.shape[1]:]
        nearest = ((x_others[:, None, :] - side_centres[None]) ** 2).sum(axis=2).argmin(axis=1)
        joined = np.bincount(nearest, minlength=k)
    clusters = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        picked = members[representatives(x[members], kmeans.cluster_centers_[c], popularity[members],
                                         cfg.n_representatives)]
        ranked = np.argsort(-tfidf[c], kind="stable")
        named = name_genres(ranked[tfidf[c, ranked] > 0], genre_rows[members], genre_rows[picked[:N_SHOWN]])
        top_genres = ranked[:cfg.n_top_genres]
        clusters.append({
            "id": c,
            "name": cluster_name([genre_names[g] for g in named], str(items["name"].iloc[picked[0]])),
            "name_check": {"genres": [genre_names[g] for g in named],
                           "share_of_titles": round(carry_share(genre_rows[members], named), 4) if named else None,
                           "share_of_shown": round(carry_share(genre_rows[picked[:N_SHOWN]], named), 4)
                           if named else None},
            "size": int(len(members)),
            **({"catalogue_size": int(len(members) + joined[c])} if others is not None else {}),
            "top_genres": [{"genre": genre_names[g], "weight": round(float(tfidf[c, g]), 4),
                            "share": round(float(share[c, g]), 4)} for g in top_genres if tfidf[c, g] > 0],
            "genre_tfidf": {genre_names[g]: round(float(tfidf[c, g]), 4) for g in range(len(genre_names))
                            if share[c, g] > 0},
            "representatives": [{"iid": int(items["iid"].iloc[i]), "item_id": int(items["item_id"].iloc[i]),
                                 "name": str(items["name"].iloc[i])} for i in picked],
        })
    return {"k": k, "criterion": {"name": "silhouette", "k_range": [cfg.k_min, cfg.k_max],
                                  "sample": min(cfg.silhouette_sample, len(x)), "seed": cfg.seed,
                                  "scores": {str(kk): round(s, 4) for kk, s in scores.items()}},
            "n_titles": int(len(items)), "name_min_share": NAME_MIN_SHARE,
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


MAX_CLUSTERS = 50  # a page draws one row per cluster: more would take seconds per page run
MAX_REPRESENTATIVES = 100
MAX_ITEM_ID = 2**31 - 1


def taste_rows(path: str | Path, iid_map_sha256: str) -> list[dict]:
    """clusters.json -> the app's "Browse by taste" rows: {"name", "genres" (the named ones), "size",
    "catalogue_size" (None when the
    clusters were made without the catalogue), "item_ids"} per cluster, largest first. ValueError (one line,
    naming the file and the bad field) when it is not a clusters file, breaks a limit, or was made for other data."""
    path = Path(path)
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}); run `python -m nostrade.clusters` again") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable clusters file ({type(e).__name__}: {e})") from None
    where = f"{path}: "
    if not isinstance(record, dict) or not isinstance(record.get("clusters"), list):
        raise ValueError(f"{where}not a clusters file (no list of clusters)")
    if record.get("iid_map_sha256") != iid_map_sha256:
        made = str(record.get("iid_map_sha256"))[:12]
        raise ValueError(f"{where}made for other data (iid map {made}…, the data in use has {iid_map_sha256[:12]}…); "
                         "run `python -m nostrade.clusters` again")
    if len(record["clusters"]) > MAX_CLUSTERS:
        raise ValueError(f"{where}{len(record['clusters']):,} clusters, more than the {MAX_CLUSTERS} a page shows")
    rows = [checked_cluster(c, f"{where}clusters[{i}]") for i, c in enumerate(record["clusters"])]
    return sorted(rows, key=lambda r: -r["size"])


def checked_cluster(cluster, where: str) -> dict:
    """One cluster of the file as a taste row, each field checked (ValueError naming the field and the value)."""
    if not isinstance(cluster, dict):
        raise ValueError(f"{where}: not an object")
    name = cluster.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValueError(f"{where}.name: {name!r} is not a short text")
    size = count(cluster.get("size"), f"{where}.size")
    catalogue_size = cluster.get("catalogue_size")
    if catalogue_size is not None:
        catalogue_size = count(catalogue_size, f"{where}.catalogue_size")
    reps = cluster.get("representatives")
    if not isinstance(reps, list) or len(reps) > MAX_REPRESENTATIVES:
        raise ValueError(f"{where}.representatives: not a list of at most {MAX_REPRESENTATIVES} titles")
    ids = [count(_item_id_of(r), f"{where}.representatives[{j}].item_id", MAX_ITEM_ID) for j, r in enumerate(reps)]
    check = cluster.get("name_check")
    genres = check.get("genres", []) if isinstance(check, dict) else []
    if not isinstance(genres, list) or not all(isinstance(g, str) for g in genres):
        raise ValueError(f"{where}.name_check.genres: {genres!r} is not a list of genre names")
    return {"name": name.strip(), "genres": genres, "size": size, "catalogue_size": catalogue_size, "item_ids": ids}


def _item_id_of(representative):
    """A representative's item id; files written before issue 29 name it anime_id."""
    if not isinstance(representative, dict):
        return representative
    return representative.get("item_id", representative.get("anime_id"))


def count(value, where: str, largest: int = 10**9) -> int:
    """``value`` as an int in 0..largest (JSON's integers; not a bool, a float, Infinity or text)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= largest:
        raise ValueError(f"{where}: {value!r} is not a whole number in 0..{largest:,}")
    return value


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
