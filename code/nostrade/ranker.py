"""Two-stage recommender: candidate generators, then a learned listwise ranker (LightGBM lambdarank).

    model = TwoStage(generators=("sasrec", "als", "itemknn", "ease", "gru4rec", "content", "popularity"),
                     models=GENERATOR_MODELS)     # the generators' classes by name (nostrade.registry)
    model.fit(dataset, train).score(history)      # the shared model interface; make_model("ranker", ...) gives one

Stage 1: every generator (a model of ``models``) scores every title; its ``n_candidates`` best unseen titles are
its candidates, and stage 2 ranks their union.
Stage 2: ``lightgbm.LGBMRanker`` (lambdarank: gradients of NDCG, a listwise objective) over features of each
(history, candidate) pair:
- each generator's score (standardised over the history's candidates) and its rank among the unseen titles. A
  generator scores every title, so a candidate has both for every generator, whichever retrieved it;
- the title (``title_features``): log training count; log members, episodes, type and mean rating where the
  catalogue has them (not those a source counts over its whole ratings file: MovieLens members and mean rating);
- the history: its length, its shares of Dislikes and of Loves;
- the taste cosine (nostrade.similarity) to the history's liked profile, and the max to a disliked title;
- with ``like_features``: the title's training like share, and SASRec's log P(like) of it.

Honest fit: the ranker never sees the data set's validation or test targets. ``fit`` splits the training part it is
given once more (nostrade.split's rules for this data's order: the last two events, or two random ones where the
order is not time), ``learning_rounds`` times over (each round splits what the last one left: two more events of
each person held out), fits the generators on the rest, and the ranker learns on those held-out targets, each ranked
from the history before it — as at test time, the newest events of the history are ones the generators did not train
on, and the title features and taste vectors are counted without those targets too. Then (``refit``) the generators,
title features and taste vectors are fitted again on the whole training part. A held-out Like or Love is the one
relevant title of its case; a held-out Dislike (``disliked_targets``: "negative", the default) is the one title of
its case the ranker should put below all the other candidates — the person watched it, so the generators put it
high, and learning where that goes wrong is learning to keep Dislikes down. ("skip": such cases are left out;
"positive": a Dislike is a target like any other, which lowered the gap between liked and disliked titles, Δ, on the
anime sample.)

Feedback features (``like_features``): each title's share of Likes and Loves among its training events (smoothed
towards the overall share), and where a generator has a feedback head (SASRec's), its log P(like | history, title).

Its size — 100 trees of 7 leaves, at least 100 candidates a leaf — is the best of a small grid by validation
NDCG@10 on ML-100K and second best on the anime sample (benchmarks/ranker_validation.py; LightGBM's usual
200 trees of 31 leaves overfit the ~2 held-out targets per person: 0.0818 against 0.0919 on ML-100K).

Where the data's order is not time, generators that read the order of a history (GRU4Rec) are left out, so the
same titles rated in any click order get the same answer (SASRec is a set model there).

Serving reads the booster's trees compiled to native code (lleaves, ``compiled_trees``): the same predictions,
about 9x faster than LightGBM's own predict on one request's candidates.

Titles outside the candidates rank below every candidate, by their mean rank over the generators. ``mmr_lambda``
below 1 re-ranks the top ``mmr_depth`` for variety of genres (nostrade.diversity.mmr).

Served (``python -m nostrade.train --model ranker``; nostrade.scoring, predict): a fitted TwoStage is a checkpoint's
model of kind "ranker": ``config()`` holds its options, every generator's config and the LightGBM model as its text
dump, ``state_dict()`` every generator's tensors; ``score_and_retrieval`` also says which generators retrieved each
title, which the explanations name. Its item space is the taste vectors (nostrade.similarity).
"""
from __future__ import annotations

import hashlib
import inspect
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import lightgbm
import lleaves
import numpy as np
import torch

from nostrade import similarity
from nostrade.baselines.interactions import known_events
from nostrade.dataset import Dataset
from nostrade.diversity import mmr
from nostrade.sequences import DISLIKE, LOVE, Sequences, sum_by_owner
from nostrade.split import EvalCases, leave_one_out

GENERATORS = ("sasrec", "als", "itemknn", "ease", "gru4rec", "content", "popularity")
N_CANDIDATES = 100  # titles each generator retrieves, by default
ORDER_READERS = ("gru4rec",)  # left out where the order is not time (SASRec is then a set model)
ITEM_COLUMNS = ("members", "episodes", "rating_mean", "year")  # used where the catalogue has them
DISLIKE_FEATURES = ("dislike_share", "taste_disliked_max")  # the only ones a Dislike moves; monotone decreasing
DISLIKED_TARGETS = ("negative", "skip", "positive")  # what a held-out Dislike teaches the ranker (see above)
# a held-out Dislike's group weighs 3 Likes': of 1 and 3, the larger validation Δ on ML-100K
# (benchmarks/ranker_feedback.py)
DISLIKED_WEIGHT = 3.0
# rounds of held-out events it learns from (two per person each): 3 against 1 and 2, the larger validation Δ and
# next-item NDCG@10 on ML-100K (benchmarks/ranker_feedback.py --variants: artifacts/bench/ranker-rounds*-ml100k.json)
LEARNING_ROUNDS = 3
LIKE_PRIOR_EVENTS = 10.0  # a title's like share is smoothed as if it had this many more events at the overall share


GeneratorModels = Mapping[str, type]  # a generator's name -> its model class (nostrade.registry.GENERATOR_MODELS)


def has_seed(model_class) -> bool:
    """Whether a model class has randomness (a ``seed`` option); the others give the same scores every run."""
    return "seed" in inspect.signature(model_class).parameters


def training_digest(train: Sequences) -> str:
    return hashlib.sha1(train.offsets.tobytes() + train.iid.tobytes() + train.feedback.tobytes()).hexdigest()


class FittedGenerators:
    """Generators fitted once per (name, seed, training data) and shared: several rankers of one ablation reuse
    them, and a model fitted for its own row can be ``add``-ed. ``classes``: the models it may fit, by name."""

    def __init__(self, classes: GeneratorModels, options: dict[str, dict] | None = None):
        self.classes, self.options, self.models = classes, options or {}, {}

    def key(self, name: str, seed: int, train: Sequences) -> tuple:
        return name, seed if has_seed(self.classes[name]) else 0, training_digest(train)

    def add(self, name: str, seed: int, train: Sequences, model) -> None:
        self.models[self.key(name, seed, train)] = model

    def __call__(self, name: str, seed: int, dataset: Dataset, train: Sequences):
        key = self.key(name, seed, train)
        if key not in self.models:
            options = {**self.options.get(name, {}), **({"seed": seed} if has_seed(self.classes[name]) else {})}
            self.models[key] = self.classes[name](**options).fit(dataset, train)
        return self.models[key]


class TwoStage:
    kind = "ranker"
    window = None
    dislikes_only_lower = True  # by construction (_stage_one): nostrade.scoring needs no pass without them

    def __init__(self, generators: Sequence[str] = GENERATORS, n_candidates: int = N_CANDIDATES, seed: int = 0,
                 refit: bool = True, n_estimators: int = 100, learning_rate: float = 0.05, num_leaves: int = 7,
                 min_child_samples: int = 100, num_threads: int = 1, mmr_lambda: float = 1.0, mmr_depth: int = 50,
                 without: Sequence[str] = (), disliked_targets: str = "negative",
                 disliked_weight: float = DISLIKED_WEIGHT, learning_rounds: int = LEARNING_ROUNDS,
                 like_features: bool = True, fit_generator: Callable | None = None, *, models: GeneratorModels):
        """``models``: the classes of the generators it may use, by name; ``fit_generator(name, seed, dataset,
        train)``: a fitted generator (default: a fresh FittedGenerators over ``models``)."""
        single = tuple(m for m in models if m != self.kind)
        if not generators or set(generators) - set(single) or set(without) - set(single):
            raise ValueError(f"generators: {list(generators)} (without {list(without)}) must be models of {single}")
        if not set(generators) - set(without):
            raise ValueError(f"generators: none left of {list(generators)} without {list(without)}")
        if n_candidates < 1:
            raise ValueError(f"n_candidates: {n_candidates} must be at least 1")
        if disliked_targets not in DISLIKED_TARGETS:
            raise ValueError(f"disliked_targets: {disliked_targets!r} is not one of {DISLIKED_TARGETS}")
        if learning_rounds < 1:
            raise ValueError(f"learning_rounds: {learning_rounds} must be at least 1")
        if not disliked_weight > 0:
            raise ValueError(f"disliked_weight: {disliked_weight} must be above 0")
        if not 0.0 <= mmr_lambda <= 1.0:
            raise ValueError(f"mmr_lambda: {mmr_lambda} must be in [0, 1] (1: no diversity re-rank)")
        self.generator_names = tuple(g for g in generators if g not in without)
        self.n_candidates, self.seed, self.refit = n_candidates, seed, refit
        self.disliked_targets, self.disliked_weight = disliked_targets, disliked_weight
        self.learning_rounds = learning_rounds
        self.like_features, self.like_generators = like_features, ()
        self.mmr_lambda, self.mmr_depth = mmr_lambda, mmr_depth
        self.fit_generator = fit_generator or FittedGenerators(models)
        self.generator_models = models
        self.lgbm = dict(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
                         min_child_samples=min_child_samples, n_jobs=num_threads, random_state=seed,
                         deterministic=True, force_row_wise=True, verbose=-1)

    # ---- fit ---------------------------------------------------------------------------------------------------

    def fit(self, dataset: Dataset, train: Sequences) -> "TwoStage":
        if not dataset.order_is_time:  # the answer must not depend on the click order
            self.generator_names = tuple(g for g in self.generator_names if g not in ORDER_READERS) or ("popularity",)
        self.n_items = dataset.n_items
        self.genre_unit = similarity.genre_unit_vectors(dataset)  # the diversity re-rank's space
        inner, cases = train, []
        for round_ in range(self.learning_rounds):  # each round holds out two more events of each person
            split = leave_one_out(inner, dataset.order_is_time, self.seed + round_)
            inner, cases = split.train, cases + [split.valid, split.test]
        # what it learns from is counted without its held-out targets, as at test time
        self._fit_training_statistics(dataset, inner)
        self.generators = self._generators(dataset, inner)
        self.like_generators = tuple(name for name, g in self.generators.items()
                                     if self.like_features and getattr(g, "has_like_head", False))
        features, labels, groups, disliked = self._learning_set(*cases)
        if not len(groups):
            raise ValueError("ranker: no held-out target of the training part is among the candidates; "
                             "raise n_candidates or give more data")
        decreasing = [-1 if name in DISLIKE_FEATURES else 0 for name in self.feature_names()]
        self.ranker = lightgbm.LGBMRanker(objective="lambdarank", monotone_constraints=decreasing, **self.lgbm)
        weight = np.repeat(np.where(disliked, self.disliked_weight, 1.0), groups)  # per row, LightGBM's way
        self.ranker.fit(features, labels, group=groups, sample_weight=weight)
        self.booster = self.ranker.booster_  # what scores (a checkpoint keeps only it, as its text dump)
        self._compiled = None
        if self.refit:
            self._fit_training_statistics(dataset, train)
            self.generators = self._generators(dataset, train)
        return self

    def _fit_training_statistics(self, dataset: Dataset, train: Sequences) -> None:
        """The per-title features and taste vectors counted over ``train``."""
        self.title_features, self.title_feature_names = title_features(dataset, train, self.like_features)
        self.taste = similarity.taste_vectors(dataset, train)
        self.taste_cosines = similarity.Cosines(self.taste)

    def options(self) -> dict:
        """What it was made with: ``TwoStage(**ranker.options())`` is the same ranker unfitted (a refit on new
        data: nostrade.train.refit_ranker)."""
        lgbm = self.lgbm
        return dict(generators=self.generator_names, n_candidates=self.n_candidates, seed=self.seed,
                    refit=self.refit, n_estimators=lgbm["n_estimators"], learning_rate=lgbm["learning_rate"],
                    num_leaves=lgbm["num_leaves"], min_child_samples=lgbm["min_child_samples"],
                    num_threads=lgbm["n_jobs"], mmr_lambda=self.mmr_lambda, mmr_depth=self.mmr_depth,
                    disliked_targets=self.disliked_targets, disliked_weight=self.disliked_weight,
                    learning_rounds=self.learning_rounds, like_features=self.like_features,
                    models=self.generator_models)

    def _generators(self, dataset: Dataset, train: Sequences) -> dict:
        return {name: self.fit_generator(name, self.seed, dataset, train) for name in self.generator_names}

    def _learning_set(self, *case_sets: EvalCases):
        """Features and 0/1 labels of the candidates of every case whose target is among them, grouped by case: the
        target 1 and the rest 0 where it is a Like or Love; where it is a Dislike, per ``disliked_targets``: the
        target 0 and the rest 1 ("negative"), left out ("skip"), or as a Like ("positive"); and which groups are
        such a Dislike's (weighted ``disliked_weight`` in the fit)."""
        features, labels, groups, disliked_groups = [], [], [], []
        for cases in case_sets:
            for start in range(0, len(cases), 512):
                rows = np.arange(start, min(start + 512, len(cases)))
                candidates, x, _, _ = self._stage_one(cases.history.take(rows))
                hit = candidates[rows - start, cases.target[rows]]
                disliked = (cases.target_feedback[rows] == DISLIKE) & (self.disliked_targets != "positive")
                if self.disliked_targets == "skip":
                    hit &= ~disliked
                owner = np.repeat(np.arange(len(rows)), candidates.sum(axis=1))
                keep = hit[owner]
                item = np.nonzero(candidates)[1]
                features.append(x[keep])
                labels.append(((item == cases.target[rows][owner]) != disliked[owner])[keep].astype(np.int32))
                groups.append(candidates.sum(axis=1)[hit])
                disliked_groups.append(disliked[hit])
        return (np.concatenate(features), np.concatenate(labels), np.concatenate(groups),
                np.concatenate(disliked_groups))

    # ---- score -------------------------------------------------------------------------------------------------

    def _stage_one(self, history: Sequences) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(B, n_items + 1) candidate mask, one feature row per candidate (row-major: history, then iid), every
        title's mean rank over the generators, and which generators retrieved it (``retrieved_by``).

        The generators read the liked events only (Like / Love), and ranks and standardised scores are over the
        titles not liked already: a Dislike changes no generator feature. It reaches the features only as the
        dislike share and the nearest-dislike cosine, which the ranker is monotone decreasing in
        (``DISLIKE_FEATURES``), and it takes its title off the candidates: so a Dislike can only lower a title's
        score (``dislikes_only_lower``)."""
        history = history.select(known_events(history, self.n_items))
        liked = history.select(history.feedback != DISLIKE)
        seen_liked = seen_mask(liked, self.n_items)
        outputs = {name: generator_scores(g, liked, seen_liked) for name, g in self.generators.items()}
        # (G, B, n_items + 1): every generator's scores, and ranks from one sort of all of them
        scores = np.stack([s for s, _ in outputs.values()])
        ranks = unseen_ranks(scores.reshape(-1, scores.shape[-1])).reshape(scores.shape)
        bits = (1 << np.arange(len(scores), dtype=np.uint16))[:, None, None]
        retrieved = np.bitwise_or.reduce((ranks <= self.n_candidates) * bits, axis=0, dtype=np.uint16)
        retrieved[seen_liked] = 0  # fewer unseen titles than n_candidates: the seen ones are never candidates
        user, item = np.nonzero(retrieved)
        # per generator its standardised score and its rank, side by side
        columns = np.stack([standardised(scores[:, user, item], user, len(retrieved)), ranks[:, user, item]], axis=1)
        columns = list(columns.reshape(-1, len(user)))
        history_columns = history_features(history, self.n_items)
        taste_liked, taste_disliked = taste_cosines(self.taste_cosines, history)
        like_columns = [outputs[name][1][user, item] for name in self.like_generators]
        x = np.column_stack([*columns, self.title_features[item], history_columns[user],
                             taste_liked[user, item], taste_disliked[user, item], *like_columns])
        # rounded: float noise (a batch vs one history: 1e-9 either side of 0) must not cross a split threshold
        x = np.round(x, 6).astype(np.float32)
        disliked = seen_mask(history, self.n_items)[user, item]  # seen, hence never recommended
        retrieved[user[disliked], item[disliked]] = 0
        return retrieved > 0, x[~disliked], ranks.mean(axis=0), retrieved

    def score(self, history: Sequences) -> torch.Tensor:
        return self.score_and_retrieval(history)[0]

    def score_and_retrieval(self, history: Sequences) -> tuple[torch.Tensor, np.ndarray]:
        """``score``, and per (history, title) the generators that retrieved it: (B, n_items + 1) uint16, bit g
        set where ``generator_names[g]`` has the title among its ``n_candidates`` best unseen ones (0: none)."""
        candidates, x, mean_rank, retrieved = self._stage_one(history)
        out = (-1.0 - mean_rank / (self.n_items + 1)).astype(np.float32)  # the rest: by mean rank, in (-2, -1)
        if len(x):
            predicted = self.compiled_trees()(x).astype(np.float32)
            # candidates keep their raw prediction (monotone in the dislikes); the rest go below their lowest
            low = np.full(len(candidates), np.inf, np.float32)
            np.minimum.at(low, np.nonzero(candidates)[0], predicted)
            out += np.where(np.isfinite(low), low, 0.0)[:, None]
            out[candidates] = predicted
        if self.mmr_lambda < 1.0:
            out = mmr(out, self.genre_unit, self.mmr_lambda, self.mmr_depth)
        return torch.from_numpy(out), retrieved

    def compiled_trees(self) -> Callable[[np.ndarray], np.ndarray]:
        """The booster's trees compiled to native code on first use (lleaves: LightGBM's predictions to float
        rounding, about 9x faster on one request's few hundred candidates; under a second to compile)."""
        if getattr(self, "_compiled", None) is None:
            self._compiled = compile_trees(self.booster, self.lgbm["n_jobs"])
        return self._compiled

    def candidate_recall(self, cases: EvalCases, batch_size: int = 512) -> float:
        """Share of the cases whose target is among the candidates: the most a ranker over them can find."""
        found = 0
        for start in range(0, len(cases), batch_size):
            rows = np.arange(start, min(start + batch_size, len(cases)))
            candidates, _, _, _ = self._stage_one(cases.history.take(rows))
            found += int(candidates[rows - start, cases.target[rows]].sum())
        return found / max(len(cases), 1)

    def feature_names(self) -> list[str]:
        names = [f"{g}_{kind}" for g in self.generator_names for kind in ("score", "rank")]
        return (names + self.title_feature_names + ["liked_events", "dislike_share", "love_share", "taste_liked",
                                                    "taste_disliked_max"]
                + [f"{g}_log_like" for g in self.like_generators])

    def feature_gain(self) -> dict[str, float]:
        """Each feature's share of the ranker's total split gain (LightGBM's "gain" importance)."""
        gain = self.ranker.booster_.feature_importance("gain")
        return dict(zip(self.feature_names(), (gain / max(gain.sum(), 1e-12)).tolist()))

    def item_vectors(self) -> np.ndarray:
        return self.taste

    # ---- checkpoint (nostrade.checkpoint: tensors and plain values only) --------------------------------------

    def config(self) -> dict:
        """Options, each generator's config, and the LightGBM model as its text dump (inside the checksum)."""
        return {"generators": list(self.generator_names), "n_candidates": self.n_candidates, "seed": self.seed,
                "refit": self.refit, "disliked_targets": self.disliked_targets,
                "disliked_weight": self.disliked_weight, "learning_rounds": self.learning_rounds,
                "like_features": self.like_features,
                "like_generators": list(self.like_generators), "mmr_lambda": self.mmr_lambda,
                "mmr_depth": self.mmr_depth, "dislikes_only_lower": True,
                "lgbm": dict(self.lgbm), "item_feature_names": list(self.title_feature_names),
                "generator_configs": {name: g.config() for name, g in self.generators.items()},
                "booster": self.booster.model_to_string(), "n_items": self.n_items}

    def state_dict(self) -> dict:
        """Each generator's tensors under "<generator>.", and the ranker's own; the catalogue's missing values
        (NaN item features) as a mask, since a checkpoint refuses non-finite weights."""
        missing = np.isnan(self.title_features)  # (the checkpoint's keys keep their first names, item_features*)
        state = {"item_features": torch.from_numpy(np.where(missing, 0.0, self.title_features).astype(np.float32)),
                 "item_features_missing": torch.from_numpy(missing),
                 "taste": torch.from_numpy(self.taste), "genre_unit": torch.from_numpy(self.genre_unit)}
        for name, generator in self.generators.items():
            state.update({f"{name}.{key}": value for key, value in generator.state_dict().items()})
        return state

    @classmethod
    def from_state(cls, config: dict, state: dict, models: GeneratorModels) -> "TwoStage":
        if not config.get("dislikes_only_lower"):
            raise ValueError("ranker checkpoint: trained before its generators read the liked events only (its "
                             "features mean something else now); retrain it: python -m nostrade.train --model ranker")
        older = "skip" if config.get("liked_targets") else "positive"  # before disliked_targets
        model = cls(config["generators"], config["n_candidates"], config["seed"], config["refit"],
                    mmr_lambda=config["mmr_lambda"], mmr_depth=config["mmr_depth"],
                    disliked_targets=config.get("disliked_targets", older),
                    disliked_weight=config.get("disliked_weight", 1.0),
                    learning_rounds=config.get("learning_rounds", 1),
                    like_features=config.get("like_features", False), models=models)
        model.lgbm, model.n_items = dict(config["lgbm"]), config["n_items"]
        model.like_generators = tuple(config.get("like_generators", ()))
        features = state["item_features"].numpy().copy()
        features[state["item_features_missing"].numpy()] = np.nan
        model.title_features, model.title_feature_names = features, list(config["item_feature_names"])
        model.taste, model.genre_unit = state["taste"].numpy(), state["genre_unit"].numpy()
        model.taste_cosines = similarity.Cosines(model.taste)
        model.generators = {
            name: models[name].from_state(config["generator_configs"][name], {
                key[len(name) + 1:]: value for key, value in state.items() if key.startswith(name + ".")})
            for name in model.generator_names}
        model.booster = lightgbm.Booster(model_str=config["booster"])
        model._compiled = compile_trees(model.booster, model.lgbm["n_jobs"])  # at load, not in a first request
        return model


def compile_trees(booster: lightgbm.Booster, n_jobs: int) -> Callable[[np.ndarray], np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="nostrade-trees-") as folder:
        path = Path(folder) / "model.txt"
        path.write_text(booster.model_to_string())
        model = lleaves.Model(model_file=str(path))
        model.compile()
    return lambda x: model.predict(np.asarray(x, np.float64), n_jobs=max(n_jobs, 1))


def seen_mask(history: Sequences, n_items: int) -> np.ndarray:
    """(B, n_items + 1) bool: True where the row's history has the title, and at column 0 (padding)."""
    seen = np.zeros((history.n_users, n_items + 1), bool)
    seen[history.row_of_event(), history.iid] = True
    seen[:, 0] = True
    return seen


def generator_scores(model, history: Sequences, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A generator's (B, n_items + 1) float32 scores, seen titles and padding at -inf, and where it has a feedback
    head its log P(like) of every title (else None), from the same pass."""
    if getattr(model, "has_like_head", False):
        scores, log_like = model.score_and_like(history)
        log_like = log_like.float().numpy()
    else:
        scores, log_like = model.score(history), None
    scores = scores.float().numpy().copy()
    scores[seen] = -np.inf
    return scores, log_like


def unseen_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every column in its row, best first (seen titles, at -inf, last; ties by column)."""
    rows, n = scores.shape
    at = descending_order(scores) + n * np.arange(rows)[:, None]  # flat positions: a third of put_along_axis' time
    ranks = np.empty(rows * n, np.float32)
    ranks[at.ravel()] = np.tile(np.arange(1, n + 1, dtype=np.float32), rows)
    return ranks.reshape(rows, n)


def descending_order(scores: np.ndarray) -> np.ndarray:
    """What ``np.argsort(-scores, axis=1, kind="stable")`` gives (float32 scores, no NaN), 4-5x faster: one plain
    sort of unique int64 keys, each the score's bits made monotone (negative floats' bits run backwards) above
    the column."""
    bits = (scores.astype(np.float32) + np.float32(0.0)).view(np.int32)  # + 0.0: -0.0 becomes 0.0, its equal
    monotone = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64)
    keys = (-monotone << 32) | np.arange(scores.shape[1], dtype=np.int64)
    return (np.sort(keys, axis=1) & 0xFFFFFFFF).astype(np.intp)


def standardised(values: np.ndarray, owner: np.ndarray, n_owners: int) -> np.ndarray:
    """Candidates' scores minus the mean over their owner's candidates, over their std (0 where undefined).
    ``values``: (n,), or (G, n) whose rows (e.g. generators) are standardised each on its own in one pass."""
    rows = np.atleast_2d(values).astype(np.float64)
    key = (owner + n_owners * np.arange(len(rows))[:, None]).ravel()  # (row, owner) as one bin
    flat, n_bins = rows.ravel(), len(rows) * n_owners
    count = np.maximum(np.bincount(key, minlength=n_bins), 1)
    centred = flat - (np.bincount(key, flat, n_bins) / count)[key]
    std = np.sqrt(np.bincount(key, centred ** 2, n_bins) / count)[key]
    return np.where(std > 0, centred / np.maximum(std, 1e-12), 0.0).reshape(np.shape(values))


def title_features(dataset: Dataset, train: Sequences, like_share: bool = True) -> tuple[np.ndarray, list[str]]:
    """(n_items + 1, F) and the names: log training count (events in ``train``), the training like share
    (``like_share``), the catalogue's numeric columns (log members) but those counted over the whole ratings file
    (``dataset.rating_derived_columns``), type code (-1 unknown)."""
    items = dataset.items.drop(columns=list(dataset.rating_derived_columns))
    known = (train.iid >= 1) & (train.iid <= dataset.n_items)
    count = np.bincount(train.iid[known], minlength=dataset.n_items + 1).astype(np.float64)
    columns, names = [np.log1p(count)], ["log_training_count"]
    if like_share:
        liked = np.bincount(train.iid[known & (train.feedback != DISLIKE)], minlength=dataset.n_items + 1)
        overall = liked.sum() / max(count.sum(), 1.0)
        columns.append((liked + LIKE_PRIOR_EVENTS * overall) / (count + LIKE_PRIOR_EVENTS))
        names.append("like_share")
    for name in (c for c in ITEM_COLUMNS if c in items):
        values = np.concatenate([[np.nan], items[name].astype("Float64").to_numpy(np.float64, na_value=np.nan)])
        columns.append(np.log1p(np.maximum(values, 0)) if name == "members" else values)
        names.append(name)
    kinds = items["type"].astype("category").cat.codes.to_numpy() if "type" in items else np.full(len(items), -1)
    columns.append(np.concatenate([[-1], kinds]).astype(np.float64))
    return np.column_stack(columns).astype(np.float32), names + ["type"]


def history_features(history: Sequences, n_items: int) -> np.ndarray:
    """(B, 3): liked events (Like / Love), share of Dislikes among the known events, share of Loves among the liked
    (a Dislike changes only its share)."""
    known = (history.iid >= 1) & (history.iid <= n_items)
    owner, feedback = history.row_of_event()[known], history.feedback[known]
    count = lambda keep: np.bincount(owner[keep], minlength=history.n_users).astype(np.float64)
    liked, dislikes = count(feedback != DISLIKE), count(feedback == DISLIKE)
    return np.column_stack([liked, dislikes / np.maximum(liked + dislikes, 1),
                            count(feedback == LOVE) / np.maximum(liked, 1)]).astype(np.float32)


def taste_cosines(cosines: similarity.Cosines, history: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """(B, n_items + 1) each: cosine to the history's liked profile (sum of its liked titles' unit vectors), and
    the max cosine to any of its disliked titles (0 without one), in the taste space of ``cosines``."""
    taste = cosines.unit
    n_items = len(taste) - 1
    known = (history.iid >= 1) & (history.iid <= n_items)
    owner, iid, feedback = history.row_of_event()[known], history.iid[known], history.feedback[known]
    liked = feedback != DISLIKE
    profile = sum_by_owner(taste[iid[liked]], owner[liked], history.n_users)
    disliked_max = np.zeros((history.n_users, n_items + 1), np.float32)
    if not liked.all():  # a Sequences' events run row by row: a row's disliked events are one segment
        counts = np.bincount(owner[~liked], minlength=history.n_users)
        rows = np.flatnonzero(counts)
        disliked_max[rows] = similarity.max_per_segment(cosines(iid[~liked]), counts[rows])
    profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
    return profile @ cosines.unit_t, disliked_max
