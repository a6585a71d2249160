"""The one scoring path: a person's history -> the final score of every catalogue title.

Serving (predict.py, hence the app and the API), evaluation (``Scoring.scorer``, a nostrade.evaluate
Scorer) and the ablation's blend rows all call ``Scoring.scores``, so every figure is measured on what is
served. Columns are catalogue rows: the model's vocabulary first (row = iid - 1), then the titles the model
does not know; in evaluation the catalogue is the vocabulary itself.

The model is anything with ``score(history: Sequences) -> (batch, n_items + 1)`` scores and ``item_vectors()``
(SASRec, a baseline); a served one (predict.Recommender, nostrade.checkpoint) is a ``ServedModel``. Per
history, by how many of its events the model knows:
- "sequence+genre" (at least COLD_START_MIN_EVENTS):
  ``final = (1 - α)·minmax(model score) + α·minmax(genre cosine) - dislike penalty``; titles outside the
  vocabulary get model part 0, so they surface only through genres (or with α = 1), except with a model that
  scores titles from their features (``scores_titles``: SASRec with use_item_features), which scores every
  catalogue title: those outside its vocabulary from their features alone (``title_vectors``);
- "genre+popularity" (fewer: none of its titles is one the model knows):
  ``(1 - LOG_MEMBERS_WEIGHT)·minmax(genre cosine) + LOG_MEMBERS_WEIGHT·minmax(log members)``;
- "popularity" (no event): ``minmax(log members)``.
Min-max over the unseen titles (nostrade.blend). The genre cosine is between each title's genre vector and
the history's feedback-weighted genre profile (nostrade.baselines.content.profile_cosines).

A two-stage ranker (nostrade.ranker) is such a model: its score ranks its generators' candidates, and it also
says which generators retrieved each title (``Scores.retrieved``, from the same call: bit g for
``Scoring.retrieval_names[g]``; 0 for every other model).

Dislikes steer away, whatever the model learned (plain SASRec is known to rank disliked items and their
neighbours *higher*): (1) a dislike may only lower a title's model score: where a history has dislikes and
likes, the model part is the lower of the normalised scores with and without the dislikes (one batch of
model calls), except for a model that says ``dislikes_only_lower`` (the ranker: its dislikes reach its score
only through features it is monotone decreasing in, so one pass suffices); (2) the dislike penalty ``dislike_weight · max(0, max cosine to a disliked title)`` in the
model's item space is subtracted from the final score.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import torch

from nostrade.baselines.content import item_vectors, profile_cosines
from nostrade.blend import mix, normalise
from nostrade.evaluate import net_ndcg, rank_cases
from nostrade.sequences import DISLIKE, Sequences
from nostrade.similarity import Cosines, max_per_segment
from nostrade.split import EvalCases

# The model scores a history from one title it knows: one title on the model path beats the genre + popularity
# path on the held-out targets (benchmarks/first_rating.py, artifacts/bench/first_rating.json).
COLD_START_MIN_EVENTS = 1
SERVED_ALPHAS = (0.0, 0.1, 0.2, 0.3)  # the genre blend's candidates (choose_settings picks on validation)
SERVED_DISLIKE_WEIGHTS = (0.0, 0.05)  # the dislike penalty's candidates (choose_settings picks on validation)
LOG_MEMBERS_WEIGHT = 0.3  # the popularity (log members) share of the "genre+popularity" path
SERVED_ALPHA = 0.2  # the genre blend's weight where a checkpoint records none chosen on validation
DISLIKE_WEIGHT = 0.05  # 0.5 cost 28-41% of NDCG@10 on ML-100K (artifacts/results/v1/movielens-100k-dislike-0.5.md)
PATH_SEQUENCE, PATH_CONTENT, PATH_POPULARITY = "sequence+genre", "genre+popularity", "popularity"


@dataclass(frozen=True)
class CatalogueHistory:
    """One person's events as catalogue rows, oldest first (what is scored), and what else predict found."""
    rows: np.ndarray  # catalogue rows of the events scored
    feedback: np.ndarray
    time_bin: np.ndarray
    iid: np.ndarray  # model iid per event (0 = outside the model's vocabulary)
    seen_rows: np.ndarray  # every catalogue row the person has seen (never recommended)
    unknown_ids: tuple = ()  # ids outside the catalogue (skipped)
    content_only_ids: tuple = ()  # catalogue titles outside the vocabulary (counted through genres only)
    n_duplicates: int = 0  # events replaced by a later one of the same title
    n_truncated: int = 0  # events older than the model's window (seen, not scored)

    @property
    def path(self) -> str:
        if len(self.rows) == 0:
            return PATH_POPULARITY
        return PATH_SEQUENCE if int((self.iid > 0).sum()) >= COLD_START_MIN_EVENTS else PATH_CONTENT


@dataclass(frozen=True)
class Scores:
    """Scores of every catalogue title (columns = catalogue rows) for a batch of histories."""
    final: np.ndarray  # (B, C) float32, what is ranked
    model: np.ndarray  # (B, C) normalised model score (0 outside its vocabulary)
    genre: np.ndarray  # (B, C) normalised genre cosine
    log_members: np.ndarray  # (B, C) normalised log members
    penalty: np.ndarray  # (B, C) dislike penalty (already subtracted from final)
    raw_model: np.ndarray  # (B, C) model score, NaN outside its vocabulary or off the sequence path
    candidates: np.ndarray  # (B, C) bool: unseen titles
    paths: list[str]
    retrieved: np.ndarray  # (B, C) uint16: bit g set where the ranker's generator g retrieved the title (else 0)

    def take(self, rows: Sequence[int]) -> "Scores":
        """The scores of some of the histories, in the order given."""
        return Scores(**{f.name: [self.paths[r] for r in rows] if f.name == "paths" else getattr(self, f.name)[rows]
                         for f in fields(self)})


def owners(arrays: list) -> np.ndarray:
    """For arrays concatenated, the index of the array each entry came from."""
    return np.repeat(np.arange(len(arrays)), [len(a) for a in arrays])


class Scoring:
    """A model, the catalogue's genre vectors and log members, and the blend and dislike rules over them."""

    def __init__(self, model, n_items: int, item_vectors: np.ndarray, genre_unit: np.ndarray,
                 log_members: np.ndarray, dislike_weight: float = DISLIKE_WEIGHT, genre_names: Sequence[str] = ()):
        """``item_vectors`` (n_items + 1, d): the model's item space (dislike penalty); ``genre_unit`` (C, G):
        unit genre vectors of the catalogue rows, ``genre_names`` the genre of each of its columns;
        ``log_members`` (C,): each row's log(1 + members), the popularity paths' measure."""
        self.genre_names = list(genre_names)
        self.model, self.n_items, self.dislike_weight = model, n_items, float(dislike_weight)
        norms = np.linalg.norm(item_vectors, axis=1, keepdims=True)
        self.item_unit = (item_vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        self.item_unit[0] = 0.0  # padding: similar to nothing
        self._cosines = Cosines(self.item_unit, first_column=1)  # to the vocabulary's titles
        self.genre_unit = np.asarray(genre_unit, dtype=np.float32)
        self._genre_unit_t = np.ascontiguousarray(self.genre_unit.T)
        self.log_members = np.asarray(log_members, dtype=np.float32)
        self.retrieval_names = tuple(getattr(model, "generator_names", ()))  # a ranker's generators, in bit order
        # a model whose dislikes can only lower its scores by construction (the ranker) needs no second pass
        self.dislikes_only_lower = bool(getattr(model, "dislikes_only_lower", False))
        self.table = None  # the model's served_table, where it scores the catalogue rows after the vocabulary too
        self.n_scored = n_items  # catalogue rows with a model score: the vocabulary, or every title

    @classmethod
    def over(cls, model, catalogue: pd.DataFrame, n_items: int, dislike_weight: float = DISLIKE_WEIGHT) -> "Scoring":
        """Scoring of a catalogue frame (``genres`` lists, ``members``; the vocabulary's n_items titles first, in
        iid order): its multi-hot genre vectors, its log members, the model's item space."""
        genres, names = item_vectors(catalogue, "multihot", use_type=False)
        members = catalogue["members"].astype("Float64").fillna(0).to_numpy(np.float64)
        scoring = cls(model, n_items, model.item_vectors(), genres.toarray(), np.log1p(np.maximum(members, 0)),
                      dislike_weight, names)
        if getattr(model, "scores_titles", False):
            scoring.table, scoring.n_scored = model.served_table(catalogue.iloc[n_items:]), len(catalogue)
        return scoring

    def scores(self, histories: Sequence[CatalogueHistory], alpha: float) -> Scores:
        n, n_cat, n_model = len(histories), len(self.log_members), self.n_scored
        paths = [h.path for h in histories]
        on_path = {path: np.array([p == path for p in paths], dtype=bool)
                   for path in (PATH_SEQUENCE, PATH_CONTENT, PATH_POPULARITY)}
        candidates = np.ones((n, n_cat), dtype=bool)
        seen = [h.seen_rows for h in histories]
        candidates[owners(seen), np.concatenate(seen)] = False

        raw_model = np.full((n, n_cat), np.nan, dtype=np.float32)
        model = np.zeros((n, n_cat), dtype=np.float32)
        retrieved = np.zeros((n, n_cat), dtype=np.uint16)
        sequence_users = np.flatnonzero(on_path[PATH_SEQUENCE])
        if len(sequence_users):
            logits, liked_users, liked_logits, found = self._model_scores([histories[i] for i in sequence_users])
            liked_users = sequence_users[liked_users]
            raw_model[sequence_users, :n_model] = logits
            if found is not None:
                retrieved[sequence_users, :n_model] = found
            model[sequence_users, :n_model] = normalise(logits, candidates[sequence_users, :n_model])
            if len(liked_users):
                model[liked_users, :n_model] = np.fmin(model[liked_users, :n_model], normalise(
                    liked_logits, candidates[liked_users, :n_model]))

        rows = [h.rows for h in histories]
        cosines = profile_cosines(self.genre_unit, owners(rows), np.concatenate(rows),
                                  np.concatenate([h.feedback for h in histories]), n, transposed=self._genre_unit_t)
        genre = normalise(cosines, candidates)
        log_members = normalise(np.broadcast_to(self.log_members, (n, n_cat)), candidates)

        final = np.empty((n, n_cat), dtype=np.float32)
        for path, part in ((PATH_SEQUENCE, lambda at: mix(model[at], genre[at], alpha)),
                           (PATH_CONTENT, lambda at: mix(genre[at], log_members[at], LOG_MEMBERS_WEIGHT)),
                           (PATH_POPULARITY, lambda at: log_members[at])):
            if on_path[path].any():
                at = np.flatnonzero(on_path[path])
                final[at] = part(at)
        penalty = self._dislike_penalty(histories, n_cat)
        final -= penalty
        return Scores(final, model, genre, log_members, penalty, raw_model, candidates, paths, retrieved)

    def _model_scores(self, histories: list[CatalogueHistory]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """The model's scores of the titles it scores (``n_scored``) for each history's known events, and again
        without the dislikes for the histories that have dislikes and likes: (scores, which histories, their
        scores, and for a ranker which generators retrieved each title, of the whole histories; else None)."""
        feeds, liked_users = [], []
        for i, h in enumerate(histories):
            known = h.iid > 0
            liked = known & (h.feedback != DISLIKE)
            feeds.append(known)
            if liked.any() and liked.sum() < known.sum() and not self.dislikes_only_lower:
                liked_users.append(i)
        feeds += [(histories[i].iid > 0) & (histories[i].feedback != DISLIKE) for i in liked_users]
        chosen = list(histories) + [histories[i] for i in liked_users]
        seqs = Sequences.from_lists(*([getattr(h, name)[keep] for h, keep in zip(chosen, feeds)]
                                      for name in ("iid", "feedback", "time_bin")))
        if self.retrieval_names:
            scores, retrieved = self.model.score_and_retrieval(seqs)
            retrieved = retrieved[:len(histories), 1:]
        elif self.table is not None:
            scores, retrieved = self.model.score(seqs, table=self.table), None
        else:
            scores, retrieved = self.model.score(seqs), None
        scores = (scores.numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores))[:, 1:]
        scores = scores.astype(np.float32, copy=False)
        return scores[:len(histories)], np.array(liked_users, dtype=np.int64), scores[len(histories):], retrieved

    def _dislike_penalty(self, histories: Sequence[CatalogueHistory], n_cat: int) -> np.ndarray:
        """dislike_weight · max(0, the highest cosine to one of the history's dislikes), over the vocabulary."""
        penalty = np.zeros((len(histories), n_cat), dtype=np.float32)
        disliked = [h.iid[(h.feedback == DISLIKE) & (h.iid > 0)] for h in histories]
        counts = np.array([len(d) for d in disliked])
        if self.dislike_weight <= 0 or not counts.any():
            return penalty
        cosines = self._cosines(np.concatenate(disliked))  # each user's dislikes: one segment
        users = np.flatnonzero(counts)
        closest = max_per_segment(cosines, counts[users])
        penalty[users, :self.n_items] = self.dislike_weight * np.maximum(closest, 0.0)
        return penalty

    def scorer(self, alpha: float, batch_size: int = 256):
        """A nostrade.evaluate Scorer: iid Sequences -> (batch, n_items + 1) final scores (column 0 unused)."""
        def score(history: Sequences) -> torch.Tensor:
            out = np.zeros((history.n_users, self.n_items + 1), dtype=np.float32)
            for start in range(0, history.n_users, batch_size):
                users = np.arange(start, min(start + batch_size, history.n_users))
                out[users, 1:] = self.scores(self.histories_of(history.take(users)), alpha).final[:, :self.n_items]
            return torch.from_numpy(out)
        return score

    def choose_settings(self, valid: EvalCases, alphas: Sequence[float] = SERVED_ALPHAS,
                        dislike_weights: Sequence[float] = SERVED_DISLIKE_WEIGHTS) -> tuple[float, dict]:
        """The genre blend's α and the dislike penalty's weight of the best validation net NDCG@10 through this
        scoring (nostrade.evaluate.net_ndcg: liked targets found count for it, disliked ones against), the smallest
        of equals (α 0: the model alone); sets that weight and returns (α, every candidate's figure)."""
        liked = valid.target_feedback != DISLIKE
        sweep = {}
        for weight in dislike_weights:
            self.dislike_weight = float(weight)
            for alpha in alphas:
                ranks = rank_cases(self.scorer(alpha), valid, self.n_items)
                sweep[(float(weight), float(alpha))] = net_ndcg(ranks, liked)
        best = max(sweep.values())
        weight, alpha = min(key for key, value in sweep.items() if value >= best)
        self.dislike_weight = weight
        return alpha, {f"dislike_weight {w}, alpha {a}": value for (w, a), value in sweep.items()}

    def histories_of(self, seqs: Sequences) -> list[CatalogueHistory]:
        """Histories of iid sequences (ids outside 1..n_items dropped): row = iid - 1."""
        seqs = seqs.select((seqs.iid >= 1) & (seqs.iid <= self.n_items))
        split = lambda a: np.split(a, seqs.offsets[1:-1])
        return [CatalogueHistory(iid - 1, feedback, time_bin, iid, iid - 1) for iid, feedback, time_bin in
                zip(split(seqs.iid), split(seqs.feedback), split(seqs.time_bin))]
