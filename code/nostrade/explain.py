"""Why was this recommended: similar past picks, shared genres, co-watch counts, a sentence, a graph.

For each recommendation, the person's Like/Love picks are ranked by how close they are to it: by
cosine similarity in the model's learned item-embedding space when the recommendation came from the
model (picks the model knows first), by genre cosine otherwise. A pick is named only where that
similarity is clearly positive: above ``SIMILARITY_QUANTILE`` (90%) of the same similarity over random
pairs of titles (``similarity_floor``, computed once at load; never below 0; ``Recommender.explainer`` holds the
two floors). The top N_BECAUSE named picks are listed ("Why these?") and drawn as edges
of an influence graph (pick -> recommendation, weighted by that similarity); the sentence of a
recommendation (``reasons``) gives its own strongest evidence: its nearest pick, how many people of the
training data watched both, the genres the two share; "Because you loved X" only where the model did the work and
X is above the floor in its item space; a pick named by genres alone is said as such ("Shares Sci-Fi with X").
Co-watch evidence comes from the training
interactions held as two sparse user x item matrices, so the counts of a request are one small sparse
product.

A two-stage ranker (nostrade.ranker) also says which of its candidate generators retrieved each title
(``retrieval_phrases``): "from people like you" (collaborative filtering: ALS, EASE, item-kNN, LightGCN), "next in
your sequence" (SASRec, GRU4Rec; "fits your set of titles" where the data's order is not time and they read a
set), "similar genres" (content), "popular" (popularity).

Everything here works on a handful of numpy rows per request (k recommendations x N_BECAUSE picks):
the per-request cost is a few small matrix products, not a pass over the catalogue.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
import scipy.sparse as sp

from nostrade.sequences import FEEDBACK_NAMES, LOVE, Sequences

N_BECAUSE = 2  # picks named per recommendation
SIMILARITY_QUANTILE = 0.9  # "clearly positive": more similar than 90% of random title pairs
N_RANDOM_PAIRS = 20_000
MAX_SHARED_GENRES = 3  # named in a sentence
VERBS = {"Love": "loved", "Like": "liked", "Dislike": "disliked"}
PACKED_MAX_BYTES = 1 << 26  # co-watch audiences as bit rows up to 64 MB each (e.g. 4,000 titles x 130,000 users)
EXPLANATION_COLUMNS = ["item_id", "pick_item_id", "pick_name", "pick_feedback", "similarity",
                       "genre_similarity", "shared_genres", "co_watched", "co_loved"]
PEOPLE_LIKE_YOU, NEXT_IN_SEQUENCE, FITS_YOUR_SET = "from people like you", "next in your sequence", \
    "fits your set of titles"
RETRIEVAL_PHRASES = {"als": PEOPLE_LIKE_YOU, "ease": PEOPLE_LIKE_YOU, "itemknn": PEOPLE_LIKE_YOU,
                     "lightgcn": PEOPLE_LIKE_YOU, "sasrec": NEXT_IN_SEQUENCE, "gru4rec": NEXT_IN_SEQUENCE,
                     "content": "similar genres", "popularity": "popular"}
_FEEDBACK_NAME_OF = np.array(["", *(FEEDBACK_NAMES[c] for c in sorted(FEEDBACK_NAMES))], dtype=object)


def similarity_floor(unit_rows: np.ndarray, seed: int = 0) -> float:
    """The SIMILARITY_QUANTILE of the cosine between random pairs of distinct ``unit_rows`` (L2-normalised
    vectors, e.g. a model's item space or genre vectors), floored at 0: a similarity above it is clearly positive.
    A fixed seed: the same rows give the same floor in every process."""
    if len(unit_rows) < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(unit_rows), N_RANDOM_PAIRS)
    b = (a + rng.integers(1, len(unit_rows), N_RANDOM_PAIRS)) % len(unit_rows)  # never a title with itself
    cosines = np.einsum("ij,ij->i", unit_rows[a], unit_rows[b])
    return max(0.0, float(np.quantile(cosines, SIMILARITY_QUANTILE)))


def co_watch_matrices(sequences: Sequences, n_items: int, packed_max_bytes: int = PACKED_MAX_BYTES):
    """(watched, loved): who watched / loved each title. As bit rows, (n_items + 1, ceil(users / 8)) uint8 with
    user u at bit u of its row, where one takes at most ``packed_max_bytes``: a pair's co-watch count is then the
    popcount of two rows' AND (0.03 ms a request on the sample). Else as binary user x (n_items + 1) CSC matrices
    (about 10x slower per request, but their size grows with the events, not with users x titles)."""
    rows, iid = sequences.row_of_event(), sequences.iid
    shape = (sequences.n_users, n_items + 1)
    packed_shape = (n_items + 1, -(-sequences.n_users // 8))

    def matrix(keep: np.ndarray):
        if packed_shape[0] * packed_shape[1] <= packed_max_bytes:
            bits = np.zeros(packed_shape, dtype=np.uint8)
            np.bitwise_or.at(bits, (iid[keep], rows[keep] // 8), (1 << (rows[keep] % 8)).astype(np.uint8))
            return bits
        m = sp.csc_matrix((np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], iid[keep])), shape=shape)
        m.data[:] = 1.0  # a repeated (user, item) pair counts once
        return m

    return matrix(np.ones(len(iid), dtype=bool)), matrix(sequences.feedback == LOVE)


@dataclass(frozen=True)
class Explainer:
    """Everything explanations need, precomputed once at load (see ``predict.Recommender``)."""
    item_unit: np.ndarray  # (n_items + 1, d) float32, L2-normalised item embeddings (row 0 = padding)
    genre_unit: np.ndarray  # (n_catalogue, n_genres) float32, L2-normalised genre indicator rows
    genre_names: np.ndarray  # (n_genres,) object
    iid_of_row: np.ndarray  # (n_catalogue,) int64, model iid of each catalogue row (0 = outside vocabulary)
    item_ids: np.ndarray  # (n_catalogue,) int64
    names: np.ndarray  # (n_catalogue,) object
    watched: np.ndarray | sp.csc_matrix  # co_watch_matrices': bit rows per title, or users x (n_items + 1) CSC
    loved: np.ndarray | sp.csc_matrix
    min_similarity: float = 0.0  # a pick is named above these (similarity_floor of item_unit[1:], genre_unit)
    min_genre_similarity: float = 0.0

    def explain(self, rec_rows: np.ndarray, rec_by_model: np.ndarray, pick_rows: np.ndarray,
                pick_feedback: np.ndarray) -> dict[str, np.ndarray]:
        """Columns (EXPLANATION_COLUMNS plus ``rec``, the index into ``rec_rows``), one entry per
        (recommendation, named pick), at most N_BECAUSE per recommendation, best first, grouped by rec.

        ``rec_by_model[r]``: recommendation r came from the model; ``pick_*``: the person's Like/Love
        events as catalogue rows and feedback codes. Only picks whose similarity (embedding for a model
        recommendation, else genre) exceeds the floor are named.
        """
        rec_iid, pick_iid = self.iid_of_row[rec_rows], self.iid_of_row[pick_rows]
        both_known = (rec_iid > 0)[:, None] & (pick_iid > 0)[None, :]
        similarity = np.where(both_known, self.item_unit[rec_iid] @ self.item_unit[pick_iid].T, np.nan)
        genre_similarity = self.genre_unit[rec_rows] @ self.genre_unit[pick_rows].T
        by_embedding = rec_by_model[:, None] & both_known
        key = np.where(by_embedding, similarity, genre_similarity - 2.0)  # embedding-ranked picks first
        usable = np.where(by_embedding, similarity > self.min_similarity, genre_similarity > self.min_genre_similarity)
        n = min(N_BECAUSE, len(pick_rows))
        best = np.argsort(np.where(usable, -key, np.inf), axis=1, kind="stable")[:, :n]
        r = np.repeat(np.arange(len(rec_rows)), n)
        p = best.ravel()
        keep = usable[r, p] if n else np.zeros(0, dtype=bool)
        r, p = r[keep], p[keep]
        rec_at, pick_at = rec_rows[r], pick_rows[p]
        co_watched, co_loved = self.co_watch(pick_iid[p], rec_iid[r])
        shared = (self.genre_unit[rec_at] > 0) & (self.genre_unit[pick_at] > 0)
        return {
            "rec": r,
            "item_id": self.item_ids[rec_at],
            "pick_item_id": self.item_ids[pick_at],
            "pick_name": self.names[pick_at],
            "pick_feedback": _FEEDBACK_NAME_OF[pick_feedback[p]],
            "similarity": similarity[r, p],
            "genre_similarity": genre_similarity[r, p],
            "shared_genres": [self.genre_names[s].tolist() for s in shared],
            "co_watched": co_watched,
            "co_loved": co_loved,
        }

    def co_watch(self, pick_iid: np.ndarray, rec_iid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per (pick, rec) pair: users who watched both, and users who loved the pick and watched the rec
        (0 where either title is outside the model's vocabulary: it has no training interactions).

        From bit rows: one AND and popcount per pair. From CSC columns, work per request ~ the pairs' pick
        audiences: the rec audiences become a small dense (recs x users) mask, then each pair's pick audience is
        looked up in its rec's row.
        """
        known = (pick_iid > 0) & (rec_iid > 0)
        counts = np.zeros((2, len(pick_iid)), dtype=np.int64)
        if not known.any():
            return counts[0], counts[1]
        if isinstance(self.watched, np.ndarray):  # bit rows: the users of both titles are the bits of an AND
            audience = self.watched[rec_iid[known]]
            for out, by in zip(counts, (self.watched, self.loved)):
                out[known] = np.bitwise_count(by[pick_iid[known]] & audience).sum(axis=1, dtype=np.int64)
            return counts[0], counts[1]
        recs, rec_of_pair = np.unique(rec_iid[known], return_inverse=True)
        rec_users, rec_owner = _column_entries(self.watched, recs)
        audience = np.zeros((len(recs), self.watched.shape[0]), dtype=bool)
        audience[rec_owner, rec_users] = True
        pairs = np.flatnonzero(known)
        for out, by in zip(counts, (self.watched, self.loved)):
            users, pair = _column_entries(by, pick_iid[pairs])
            out[pairs] = np.bincount(pair, weights=audience[rec_of_pair[pair], users], minlength=len(pairs))
        return counts[0], counts[1]

    def closest(self, rec_rows: np.ndarray, other_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per recommendation, the index into ``other_rows`` of the most similar title in the model's item
        space (as the dislike penalty measures it) and that cosine (-inf where neither is in the model)."""
        rec_iid, other_iid = self.iid_of_row[rec_rows], self.iid_of_row[other_rows]
        cosines = self.item_unit[rec_iid] @ self.item_unit[other_iid].T
        cosines[:, other_iid == 0] = -np.inf
        cosines[rec_iid == 0] = -np.inf
        best = np.argmax(cosines, axis=1)
        return best, cosines[np.arange(len(rec_rows)), best]


def _column_entries(matrix: sp.csc_matrix, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the stored entries of each of ``columns`` (flat), and which of them each belongs to."""
    starts, ends = matrix.indptr[columns], matrix.indptr[columns + 1]
    lengths = ends - starts
    owner = np.repeat(np.arange(len(columns)), lengths)
    flat = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
    return matrix.indices[flat], owner


def reasons(explanations: dict, n_recs: int, by_model: np.ndarray) -> list[str | None]:
    """Per recommendation, its own strongest reason from its first (closest) explanation entry (None where no pick
    is named). A pick named by the model's item space (``by_model[r]``: the model did the work, and the pick is
    above the floor there): 'Because you loved Naruto · 1,204 people watched both · both Action, Shounen'; a pick
    named by genres alone: 'Shares Action, Shounen with Naruto, which you loved' (a genre match is not said to be
    a personal reason). The count is of the training data's users; the genres are those the two titles share."""
    out: list[str | None] = [None] * n_recs
    first = {}
    for i, r in enumerate(explanations["rec"].tolist()):
        first.setdefault(r, i)
    for r, i in first.items():
        name, verb = explanations["pick_name"][i], VERBS[explanations["pick_feedback"][i]]
        shared = ", ".join(list(explanations["shared_genres"][i])[:MAX_SHARED_GENRES])
        if not by_model[r] or np.isnan(explanations["similarity"][i]):
            out[r] = f"Shares {shared} with {name}, which you {verb}" if shared else None
            continue
        parts = [f"Because you {verb} {name}"]
        together = int(explanations["co_watched"][i])
        if together > 0:
            parts.append(f"{together:,} {'person' if together == 1 else 'people'} watched both")
        if shared:
            parts.append("both " + shared)
        out[r] = " · ".join(parts)
    return out


def retrieval_phrases(retrieved: np.ndarray, generators: Sequence[str], order_is_time: bool) -> list[list[str]]:
    """Per title, the distinct phrases (RETRIEVAL_PHRASES, in the generators' order) of the generators that retrieved
    it: ``retrieved`` holds one bitmask per title, bit g for ``generators[g]`` (nostrade.scoring.Scores.retrieved)."""
    table = phrases_of_bitmasks(tuple(generators), order_is_time)
    return [list(table[mask]) for mask in np.asarray(retrieved, dtype=np.int64).tolist()]


@functools.lru_cache(maxsize=16)
def phrases_of_bitmasks(generators: tuple[str, ...], order_is_time: bool) -> tuple[tuple[str, ...], ...]:
    """The phrases of every bitmask of ``generators`` (2^G of them: at most a few hundred), found once per model."""
    said = [RETRIEVAL_PHRASES[g] if order_is_time or RETRIEVAL_PHRASES[g] != NEXT_IN_SEQUENCE else FITS_YOUR_SET
            for g in generators]
    phrases = list(dict.fromkeys(said))
    bits_of = [sum(1 << bit for bit, p in enumerate(said) if p == phrase) for phrase in phrases]
    return tuple(tuple(p for p, bits in zip(phrases, bits_of) if mask & bits) for mask in range(1 << len(generators)))


def retrieval_note(phrases: list[str]) -> str:
    """'From people like you + similar genres' ('' for none)."""
    text = " + ".join(phrases)
    return text[:1].upper() + text[1:]


def pushed_down_note(rank: int, rank_without: int, disliked_name: str) -> str:
    """What a Dislike did to a title shown anyway (its dislike penalty is set by the disliked title it resembles
    most in the model's item space): 'ranked #7, #4 without the penalty for resembling Naruto, which you disliked'."""
    return f"ranked #{rank}, #{rank_without} without the penalty for resembling {disliked_name}, which you disliked"


def influence_graph(items, explanations) -> nx.DiGraph:
    """Pick -> recommendation edges weighted by the similarity that named the pick.

    ``items`` / ``explanations``: DataFrames or dicts of columns as ``predict.Recommendations`` holds them.
    Nodes are item ids with ``kind`` ('pick' | 'recommendation'), ``name``, and ``feedback`` (picks)
    or ``rank`` and ``score`` (recommendations). Edge ``weight``: the embedding similarity, or the
    genre similarity where there is no embedding similarity.
    """
    column = lambda frame, name: np.asarray(frame[name]).tolist()
    graph = nx.DiGraph()
    graph.add_nodes_from((a, {"kind": "recommendation", "name": n, "rank": r, "score": s}) for a, n, r, s in zip(
        column(items, "item_id"), column(items, "name"), column(items, "rank"), column(items, "score")))
    graph.add_nodes_from((a, {"kind": "pick", "name": n, "feedback": f}) for a, n, f in zip(
        column(explanations, "pick_item_id"), column(explanations, "pick_name"),
        column(explanations, "pick_feedback")))
    similarity = np.asarray(explanations["similarity"], dtype=np.float64)
    weight = np.where(np.isnan(similarity), np.asarray(explanations["genre_similarity"], dtype=np.float64), similarity)
    graph.add_weighted_edges_from(zip(column(explanations, "pick_item_id"), column(explanations, "item_id"),
                                      weight.tolist()))
    return graph
