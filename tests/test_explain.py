"""Explanation pieces on hand-made data: co-watch counts, ranking of picks, floors, reasons, the graph."""
import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from nostrade.explain import (PACKED_MAX_BYTES, SIMILARITY_QUANTILE, Explainer, co_watch_matrices, influence_graph,
                              pushed_down_note, reasons, retrieval_note, retrieval_phrases, similarity_floor)
from nostrade.sequences import DISLIKE, LIKE, LOVE, Sequences


def explainer(packed_max_bytes: int = PACKED_MAX_BYTES) -> Explainer:
    # 4 catalogue rows = iids 1..3 plus one title outside the model (row 3, iid 0); genres A, B
    item_unit = np.array([[0, 0], [1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)
    genre_unit = np.array([[1, 0], [1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    seqs = Sequences.from_lists([[1, 2], [1, 2, 3], [2, 3], [1, 1]],
                                [[LOVE, LIKE], [LOVE, LOVE, DISLIKE], [LIKE, LIKE], [LIKE, LOVE]])
    watched, loved = co_watch_matrices(seqs, 3, packed_max_bytes)
    return Explainer(item_unit, genre_unit, np.array(["A", "B"], dtype=object), np.array([1, 2, 3, 0]),
                     np.array([10, 20, 30, 40]), np.array(["one", "two", "three", "four"], dtype=object),
                     watched, loved)


def test_co_watch_matrices_count_each_pair_once():
    e = explainer(packed_max_bytes=0)  # too large to pack: CSC
    assert e.watched.shape == (4, 4) and isinstance(e.watched, sp.csc_matrix)
    assert e.watched[:, 1].toarray().ravel().tolist() == [1, 1, 0, 1]  # user 3's repeat counts once
    assert e.loved[:, 1].toarray().ravel().tolist() == [1, 1, 0, 1]
    assert e.loved[:, 2].toarray().ravel().tolist() == [0, 1, 0, 0]
    bits = explainer()  # small: a bit row per title, user u at bit u
    assert bits.watched.shape == (4, 1) and bits.watched.dtype == np.uint8
    assert bits.watched[1, 0] == 0b1011 and bits.loved[1, 0] == 0b1011 and bits.loved[2, 0] == 0b0010


@pytest.mark.parametrize("packed_max_bytes", [PACKED_MAX_BYTES, 0], ids=["bit rows", "csc"])
def test_co_watch_pairs(packed_max_bytes):
    e = explainer(packed_max_bytes)
    watched, loved = e.co_watch(np.array([1, 2, 1, 0]), np.array([2, 3, 3, 2]))
    assert watched.tolist() == [2, 2, 1, 0]  # item 1 & 2: users 0, 1; 2 & 3: users 1, 2; 1 & 3: user 1
    assert loved.tolist() == [2, 1, 1, 0]  # loved 1 and watched 2: users 0, 1; loved 2, watched 3: user 1


def test_co_watch_counts_agree_in_both_layouts_on_random_data():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 20, size=37)  # 37 users: the last byte of a bit row is part-filled
    seqs = Sequences.from_lists([rng.choice(np.arange(1, 41), size=n, replace=False) for n in lengths],
                                [rng.integers(1, 4, size=n) for n in lengths])
    picks, recs = rng.integers(0, 41, 300), rng.integers(0, 41, 300)
    counted = [Explainer(*[None] * 6, *co_watch_matrices(seqs, 40, limit)).co_watch(picks, recs)
               for limit in (PACKED_MAX_BYTES, 0)]
    assert np.array_equal(counted[0][0], counted[1][0]) and np.array_equal(counted[0][1], counted[1][1])
    assert counted[0][0].sum() > 0 and counted[0][1].sum() > 0


def test_explain_ranks_picks_by_embedding_then_genre():
    e = explainer()
    # recommendation iid 2 (row 1) by the model; picks: rows 0 (iid 1), 2 (iid 3), 3 (outside the model)
    out = e.explain(np.array([1]), np.array([True]), np.array([0, 2, 3]), np.array([LOVE, LIKE, LOVE]))
    assert out["pick_item_id"].tolist() == [10, 30]  # cos 0.8 and 0.6; the title outside the model comes last
    assert np.allclose(out["similarity"], [0.8, 0.6])
    assert out["pick_feedback"].tolist() == ["Love", "Like"]
    # the same recommendation from genres: only picks sharing a genre (row 0 has A, row 3 has A and B)
    by_genre = e.explain(np.array([1]), np.array([False]), np.array([0, 2, 3]), np.array([LOVE, LIKE, LOVE]))
    assert by_genre["pick_item_id"].tolist() == [10, 40] and by_genre["shared_genres"] == [["A"], ["A"]]


def test_a_pick_is_named_only_above_the_floor():
    e = dataclasses.replace(explainer(), min_similarity=0.7, min_genre_similarity=0.7)
    out = e.explain(np.array([1]), np.array([True]), np.array([0, 2, 3]), np.array([LOVE, LIKE, LOVE]))
    assert out["pick_item_id"].tolist() == [10]  # cos 0.8 passes; 0.6 (and the genre-only pick) do not
    by_genre = e.explain(np.array([1]), np.array([False]), np.array([0, 2, 3]), np.array([LOVE, LIKE, LOVE]))
    assert by_genre["pick_item_id"].tolist() == [10]  # genre cosine 1.0 passes, 0.6 does not


def test_a_negative_similarity_never_names_a_pick():
    e = explainer()
    unit = e.item_unit.copy()
    unit[3] = [-1, 0]  # iid 3 points away from iid 1
    out = dataclasses.replace(e, item_unit=unit).explain(np.array([0]), np.array([True]), np.array([2]),
                                                         np.array([LOVE]))
    assert len(out["pick_item_id"]) == 0


def test_similarity_floor_is_a_high_quantile_of_random_pairs_and_never_negative():
    rng = np.random.default_rng(1)
    unit = rng.normal(size=(500, 8)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    floor = similarity_floor(unit)
    pairs = unit @ unit.T
    share_above = (pairs[~np.eye(500, dtype=bool)] > floor).mean()
    assert abs(share_above - (1 - SIMILARITY_QUANTILE)) < 0.02
    assert floor == similarity_floor(unit)  # seeded
    assert similarity_floor(np.array([[1, 0], [-1, 0]], dtype=np.float32)) == 0.0
    assert similarity_floor(unit[:1]) == 0.0


def test_reasons_give_each_recommendation_its_own_nearest_pick_count_and_genres():
    # picks: row 0 ("one", iid 1, Love) and row 3 ("four", outside the model, Like). Rec iid 2: "one" at cos 0.8,
    # watched together by users 0 and 1. Rec iid 3: "one" at cos 0 is below the floor 0.1, so the genre-ranked
    # "four" (genre cosine 0.8, no co-watch counts outside the model) is its reason.
    e = dataclasses.replace(explainer(), min_similarity=0.1)
    out = e.explain(np.array([1, 2]), np.array([True, True]), np.array([0, 3]), np.array([LOVE, LIKE]))
    said = reasons(out, 3, np.array([True, True, True]))
    assert said[0] == "Because you loved one · 2 people watched both · both A"
    assert said[1] == "Shares B with four, which you liked" and said[2] is None  # named by genres: said so
    by_genres = reasons(out, 3, np.array([False, True, True]))
    assert by_genres[0] == "Shares A with one, which you loved"  # a genre-ranked rec never says "Because you"


def test_closest_title_and_the_pushed_down_note():
    e = explainer()
    best, cosine = e.closest(np.array([1, 3]), np.array([0, 2]))
    assert best[0] == 0 and abs(cosine[0] - 0.8) < 1e-6  # iid 2 is closer to iid 1 (0.8) than to iid 3 (0.6)
    assert cosine[1] == -np.inf  # a title outside the model resembles nothing there
    assert pushed_down_note(7, 4, "Steins;Gate") == \
        "ranked #7, #4 without the penalty for resembling Steins;Gate, which you disliked"


def test_graph():
    e = explainer()
    out = e.explain(np.array([1, 2]), np.array([True, True]), np.array([0]), np.array([LOVE]))
    items = {"item_id": np.array([20, 30]), "name": np.array(["two", "three"]), "rank": np.array([1, 2]),
             "score": np.array([0.9, 0.8])}
    g = influence_graph(items, out)
    assert sorted(g.edges) == [(10, 20)] and g.nodes[10]["kind"] == "pick"  # iid 3 vs iid 1: cos 0, not linked
    assert abs(g.edges[10, 20]["weight"] - 0.8) < 1e-6


def test_retrieval_phrases_name_each_kind_of_generator_once_in_its_order():
    generators = ("sasrec", "als", "itemknn", "content", "popularity", "gru4rec")
    retrieved = np.array([0b000110, 0b100001, 0b011000, 0, 0b111111])
    assert retrieval_phrases(retrieved, generators, order_is_time=True) == [
        ["from people like you"], ["next in your sequence"], ["similar genres", "popular"], [],
        ["next in your sequence", "from people like you", "similar genres", "popular"]]
    assert retrieval_phrases(retrieved[:2], generators, order_is_time=False)[1] == ["fits your set of titles"]
    assert retrieval_phrases(np.zeros(3, np.uint16), (), order_is_time=True) == [[], [], []]
    assert retrieval_note(["from people like you", "popular"]) == "From people like you + popular"
    assert retrieval_note([]) == ""
