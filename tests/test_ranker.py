from functools import partial

import numpy as np
import pytest
import torch
from model_contract import BLOCKS, ModelContract

from nostrade.ranker import FittedGenerators, TwoStage, descending_order, standardised, taste_cosines, unseen_ranks
from nostrade.registry import GENERATOR_MODELS
from nostrade.sequences import DISLIKE, LIKE, Sequences
from nostrade.similarity import Cosines
from nostrade.split import leave_one_out

CHEAP = ("itemknn", "ease", "content", "popularity")
two_stage = partial(TwoStage, models=GENERATOR_MODELS)  # the ranker over every generator class


class TestTwoStage(ModelContract):
    def make_model(self, seed):
        return two_stage(generators=CHEAP, n_candidates=10, seed=seed, min_child_samples=5)

    def rebuild(self, model_class, config, state):
        return model_class.from_state(config, state, models=GENERATOR_MODELS)


def test_unseen_ranks_are_one_based_and_put_seen_titles_last():
    scores = np.array([[0.0, 0.3, -np.inf, 0.9, 0.1]], np.float32)
    np.testing.assert_array_equal(unseen_ranks(scores), [[4, 2, 5, 1, 3]])


def test_descending_order_is_a_stable_argsort_of_the_negated_scores():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 60)).astype(np.float32)
    for value, share in ((-np.inf, 0.3), (0.5, 0.2), (-0.0, 0.1), (0.0, 0.1), (-2.5, 0.1)):
        scores[rng.random(scores.shape) < share] = value
    np.testing.assert_array_equal(descending_order(scores), np.argsort(-scores, axis=1, kind="stable"))


def test_standardised_is_over_each_owners_candidates():
    out = standardised(np.array([1.0, 2.0, 3.0, 100.0, 100.0]), np.array([0, 0, 0, 2, 2]), 3)
    np.testing.assert_allclose(out, [-1.2247449, 0.0, 1.2247449, 0.0, 0.0], rtol=1e-6)


def test_standardised_rows_are_each_standardised_on_their_own():
    values, owner = np.random.default_rng(0).normal(size=(3, 7)), np.array([0, 0, 1, 1, 1, 3, 3])
    rows = standardised(values, owner, 4)
    assert rows.shape == values.shape
    for row, expected in zip(rows, values):
        np.testing.assert_array_equal(row, standardised(expected, owner, 4))


def test_a_dislike_only_lowers_scores_and_is_never_a_candidate():
    """The ranker's one-pass dislike guarantee: the same liked events with a Dislike added score every other
    candidate no higher, and the disliked title is off the candidates."""
    model = two_stage(generators=CHEAP, n_candidates=10, min_child_samples=5).fit(BLOCKS.dataset, BLOCKS.train)
    assert model.dislikes_only_lower
    decreasing = ",".join("-1" if n in ("dislike_share", "taste_disliked_max") else "0" for n in model.feature_names())
    assert f"[monotone_constraints: {decreasing}]" in model.booster.model_to_string()
    liked = [1, 2, 3, 7]
    for disliked in range(4, 25):
        if disliked in liked:
            continue
        history = Sequences.from_lists([liked, liked + [disliked]], [[LIKE] * 4, [LIKE] * 4 + [DISLIKE]])
        candidates, x, _, _ = model._stage_one(history)
        predicted = model.booster.predict(x)
        both = candidates[0] & candidates[1]
        assert not candidates[1, disliked] and (candidates[0] & ~candidates[1]).sum() <= 1
        scored = np.zeros(candidates.shape)
        scored[candidates] = predicted
        assert (scored[1][both] <= scored[0][both] + 1e-12).all()


def test_taste_cosines_take_the_liked_profile_and_the_nearest_dislike():
    taste = np.array([[0, 0], [1, 0], [0, 1], [0.6, 0.8]], np.float32)
    history = Sequences.from_lists([[1, 2], [1], []], [[LIKE, DISLIKE], [LIKE], []])
    for max_bytes in (0, 1 << 20):  # a product per call, and gathered from the whole matrix
        liked, disliked = taste_cosines(Cosines(taste, max_bytes=max_bytes), history)
        np.testing.assert_allclose(liked[0], [0, 1, 0, 0.6], atol=1e-6)
        np.testing.assert_allclose(disliked[0], [0, 0, 1, 0.8], atol=1e-6)
        assert not disliked[1:].any() and not liked[2].any()


def test_generators_are_fitted_once_per_training_data_and_shared():
    shared = FittedGenerators(GENERATOR_MODELS)
    first = two_stage(generators=CHEAP, n_candidates=10, min_child_samples=5, fit_generator=shared)
    first.fit(BLOCKS.dataset, BLOCKS.train)
    n_fitted = len(shared.models)
    assert n_fitted == 2 * len(CHEAP)  # inner training part and the whole one
    second = two_stage(generators=("itemknn", "content"), n_candidates=10, min_child_samples=5, fit_generator=shared)
    second.fit(BLOCKS.dataset, BLOCKS.train)
    assert len(shared.models) == n_fitted
    assert second.generators["itemknn"] is first.generators["itemknn"]


def test_the_ranker_never_sees_the_targets_it_is_evaluated_on(monkeypatch):
    """fit gets the training part only; its learning targets come from that part's own held-out events."""
    seen = []
    model = two_stage(generators=CHEAP, n_candidates=10, min_child_samples=5)
    original = model._learning_set
    monkeypatch.setattr(model, "_learning_set", lambda *cases: seen.extend(cases) or original(*cases))
    model.fit(BLOCKS.dataset, BLOCKS.train)
    for cases in seen:  # every learning target is an event of that user's training part
        for user, target in zip(cases.users, cases.target):
            assert target in BLOCKS.train.iid[BLOCKS.train.offsets[user]:BLOCKS.train.offsets[user + 1]]
    assert sum(len(c) for c in seen) > 0


def test_title_statistics_it_learns_from_leave_out_its_held_out_targets(monkeypatch):
    """While learning, a held-out target of the inner split is not counted in its title's features or taste
    vector (as a test target is not at test time); the refit counts the whole training part."""
    train = with_some_dislikes(BLOCKS.train)
    counted = []
    model = two_stage(generators=CHEAP, n_candidates=10, min_child_samples=5, learning_rounds=1)
    original = model._learning_set
    monkeypatch.setattr(model, "_learning_set",
                        lambda *cases: counted.append((model.title_features.copy(), model.taste.copy()))
                        or original(*cases))
    model.fit(BLOCKS.dataset, train)
    inner = leave_one_out(train, BLOCKS.dataset.order_is_time, model.seed)
    count = lambda part: np.log1p(np.bincount(part.iid, minlength=BLOCKS.dataset.n_items + 1))
    (learning_features, learning_taste), = counted
    column = model.title_feature_names.index("log_training_count")
    assert np.allclose(learning_features[:, column], count(inner.train))
    assert np.allclose(model.title_features[:, column], count(train))
    assert not np.allclose(learning_features, model.title_features, equal_nan=True)
    assert not np.allclose(learning_taste, model.taste)


def test_each_learning_round_holds_out_two_more_events_of_each_person_to_learn_from(monkeypatch):
    learned, trained = {}, {}
    for rounds in (1, 2):
        model = two_stage(generators=CHEAP, n_candidates=10, min_child_samples=5, learning_rounds=rounds,
                          refit=False)
        original, cases = model._learning_set, []
        monkeypatch.setattr(model, "_learning_set", lambda *c, o=original, cs=cases: cs.extend(c) or o(*c))
        model.fit(BLOCKS.dataset, BLOCKS.train)
        learned[rounds] = [len(c) for c in cases]
        trained[rounds] = int(np.expm1(model.title_features[:, 0]).round().sum())  # the generators' events
    assert len(learned[1]) == 2 and len(learned[2]) == 4 and learned[2][:2] == learned[1]
    assert trained[2] == trained[1] - sum(learned[2][2:]) and model.options()["learning_rounds"] == 2
    with pytest.raises(ValueError, match="learning_rounds"):
        two_stage(learning_rounds=0)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="generators"):
        two_stage(generators=("nope",))
    with pytest.raises(ValueError, match="generators"):
        two_stage(generators=("ranker",))
    with pytest.raises(ValueError, match="n_candidates"):
        two_stage(n_candidates=0)


def test_feature_names_match_the_features():
    model = two_stage(generators=CHEAP, n_candidates=10, min_child_samples=5).fit(BLOCKS.dataset, BLOCKS.train)
    _, x, _, _ = model._stage_one(BLOCKS.new_history)
    assert x.shape[1] == len(model.feature_names()) == model.ranker.n_features_
    assert "like_share" in model.feature_names() and not model.like_generators  # no generator with a head here
    gain = model.feature_gain()
    assert list(gain) == model.feature_names() and abs(sum(gain.values()) - 1.0) < 1e-6
    assert torch.isfinite(model.score(BLOCKS.new_history)[:, 1:]).all()


def test_mmr_lambda_below_one_spreads_the_top_over_genres():
    plain = two_stage(generators=CHEAP, n_candidates=10, min_child_samples=5).fit(BLOCKS.dataset, BLOCKS.train)
    diverse = two_stage(generators=CHEAP, n_candidates=10, min_child_samples=5, mmr_lambda=0.3)
    diverse.fit(BLOCKS.dataset, BLOCKS.train)
    history = Sequences.from_lists([[1, 2, 3]])
    genres = lambda model: {(i - 1) // 6 for i in torch.topk(model.score(history)[0, 4:], 3).indices.numpy() + 4}
    assert len(genres(diverse)) > len(genres(plain))
    with pytest.raises(ValueError, match="mmr_lambda"):
        two_stage(mmr_lambda=1.5)


def test_the_booster_scores_as_the_fitted_lgbm_ranker_and_says_which_generators_retrieved_each_title():
    model = two_stage(generators=CHEAP, n_candidates=5, min_child_samples=5).fit(BLOCKS.dataset, BLOCKS.train)
    candidates, x, _, retrieved = model._stage_one(BLOCKS.new_history)
    np.testing.assert_array_equal(model.booster.predict(x), model.ranker.predict(x))
    np.testing.assert_allclose(model.compiled_trees()(x), model.booster.predict(x), rtol=1e-9, atol=1e-12)
    scores, found = model.score_and_retrieval(BLOCKS.new_history)
    assert torch.equal(scores, model.score(BLOCKS.new_history)) and np.array_equal(found, retrieved)
    np.testing.assert_array_equal(found > 0, candidates)
    seen = np.zeros_like(candidates)
    seen[BLOCKS.new_history.row_of_event(), BLOCKS.new_history.iid] = True
    for bit, generator in enumerate(model.generators.values()):
        ranked = generator.score(BLOCKS.new_history).numpy().copy()
        ranked[:, 0] = -np.inf
        ranked[seen] = -np.inf
        top = np.argsort(-ranked, axis=1, kind="stable")[:, :5]
        by_bit = (found >> bit) & 1
        assert (np.take_along_axis(by_bit, top, axis=1) == 1).all() and (by_bit.sum(axis=1) == 5).all()


def test_seen_titles_are_never_candidates_even_when_few_titles_are_unseen():
    model = two_stage(generators=CHEAP, n_candidates=50, min_child_samples=5).fit(BLOCKS.dataset, BLOCKS.train)
    history = Sequences.from_lists([list(range(1, 21))])  # 20 of the 24 titles seen: 4 unseen < 50
    candidates, x, _, _ = model._stage_one(history)
    assert candidates[0].sum() == 4 and not candidates[0, 1:21].any() and np.isfinite(x).all()


def test_where_the_order_is_not_time_generators_that_read_it_are_left_out():
    import dataclasses
    order_free = dataclasses.replace(BLOCKS.dataset, meta={**BLOCKS.dataset.meta, "order_is_time": False})
    model = two_stage(generators=("itemknn", "gru4rec", "popularity"), n_candidates=10, min_child_samples=5)
    model.fit(order_free, BLOCKS.train)
    assert model.generator_names == ("itemknn", "popularity") and set(model.generators) == {"itemknn", "popularity"}
    history = Sequences.from_lists([[1, 2, 3, 7], [7, 3, 2, 1]])
    scores = model.score(history)
    torch.testing.assert_close(scores[0], scores[1])


def test_without_drops_generators_and_must_leave_one():
    assert two_stage(without=("sasrec", "gru4rec")).generator_names == ("als", "itemknn", "ease", "content", "popularity")
    with pytest.raises(ValueError, match="none left"):
        two_stage(generators=("ease",), without=("ease",))


def with_some_dislikes(train: Sequences) -> Sequences:
    """The same events, every third one a Dislike."""
    feedback = [[LIKE if (u + k) % 3 else DISLIKE for k in range(b - a)]
                for u, (a, b) in enumerate(zip(train.offsets[:-1], train.offsets[1:]))]
    return Sequences.from_lists([list(train.iid[a:b]) for a, b in zip(train.offsets[:-1], train.offsets[1:])], feedback)


def test_a_held_out_dislike_is_the_one_candidate_to_put_below_the_rest_or_skipped_or_a_target():
    train = with_some_dislikes(BLOCKS.train)
    model = two_stage(generators=CHEAP, n_candidates=10, min_child_samples=5).fit(BLOCKS.dataset, train)
    cases = leave_one_out(train).test
    sets, disliked_groups = {}, {}
    for mode in ("negative", "skip", "positive"):
        model.disliked_targets = mode
        _, labels, groups, disliked_groups[mode] = model._learning_set(cases)
        sets[mode] = np.split(labels, np.cumsum(groups)[:-1])
    liked = int((cases.target_feedback != DISLIKE).sum())
    assert 0 < len(sets["skip"]) <= liked < len(sets["positive"]) == len(sets["negative"])
    assert all(group.sum() == 1 for group in sets["skip"] + sets["positive"])
    below = [group for group in sets["negative"] if group.sum() == len(group) - 1]  # the Dislike 0, the rest 1
    assert len(below) == len(sets["negative"]) - len(sets["skip"]) == disliked_groups["negative"].sum() > 0
    assert not disliked_groups["skip"].any() and not disliked_groups["positive"].any()


def test_held_out_dislikes_weigh_more_with_disliked_weight():
    train = with_some_dislikes(BLOCKS.train)
    plain, heavy = (two_stage(generators=CHEAP, n_candidates=10, min_child_samples=5, disliked_weight=w)
                    .fit(BLOCKS.dataset, train) for w in (1.0, 8.0))
    assert plain.booster.model_to_string() != heavy.booster.model_to_string()
    with pytest.raises(ValueError, match="disliked_weight"):
        two_stage(disliked_weight=0.0)
