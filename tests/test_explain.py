"""Explanation pieces on hand-made data: co-watch counts, ranking of picks, sentences, the graph."""
import numpy as np
import scipy.sparse as sp

from nostrade.explain import Explainer, co_watch_matrices, influence_graph, sentences
from nostrade.sequences import DISLIKE, LIKE, LOVE, Sequences


def explainer() -> Explainer:
    # 4 catalogue rows = iids 1..3 plus one title outside the model (row 3, iid 0); genres A, B
    item_unit = np.array([[0, 0], [1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)
    genre_unit = np.array([[1, 0], [1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    seqs = Sequences.from_lists([[1, 2], [1, 2, 3], [2, 3], [1, 1]],
                                [[LOVE, LIKE], [LOVE, LOVE, DISLIKE], [LIKE, LIKE], [LIKE, LOVE]])
    watched, loved = co_watch_matrices(seqs, 3)
    return Explainer(item_unit, genre_unit, np.array(["A", "B"], dtype=object), np.array([1, 2, 3, 0]),
                     np.array([10, 20, 30, 40]), np.array(["one", "two", "three", "four"], dtype=object),
                     watched, loved)


def test_co_watch_matrices_count_each_pair_once():
    e = explainer()
    assert e.watched.shape == (4, 4) and isinstance(e.watched, sp.csc_matrix)
    assert e.watched[:, 1].toarray().ravel().tolist() == [1, 1, 0, 1]  # user 3's repeat counts once
    assert e.loved[:, 1].toarray().ravel().tolist() == [1, 1, 0, 1]
    assert e.loved[:, 2].toarray().ravel().tolist() == [0, 1, 0, 0]


def test_co_watch_pairs():
    e = explainer()
    watched, loved = e.co_watch(np.array([1, 2, 1, 0]), np.array([2, 3, 3, 2]))
    assert watched.tolist() == [2, 2, 1, 0]  # item 1 & 2: users 0, 1; 2 & 3: users 1, 2; 1 & 3: user 1
    assert loved.tolist() == [2, 1, 1, 0]  # loved 1 and watched 2: users 0, 1; loved 2, watched 3: user 1


def test_explain_ranks_picks_by_embedding_then_genre():
    e = explainer()
    # recommendation iid 2 (row 1) by the model; picks: rows 0 (iid 1), 2 (iid 3), 3 (outside the model)
    out = e.explain(np.array([1]), np.array([True]), np.array([0, 2, 3]), np.array([LOVE, LIKE, LOVE]))
    assert out["pick_anime_id"].tolist() == [10, 30]  # cos 0.8 and 0.6; the title outside the model comes last
    assert np.allclose(out["similarity"], [0.8, 0.6])
    assert out["pick_feedback"].tolist() == ["Love", "Like"]
    # the same recommendation from genres: only picks sharing a genre (row 0 has A, row 3 has A and B)
    by_genre = e.explain(np.array([1]), np.array([False]), np.array([0, 2, 3]), np.array([LOVE, LIKE, LOVE]))
    assert by_genre["pick_anime_id"].tolist() == [10, 40] and by_genre["shared_genres"] == [["A"], ["A"]]


def test_sentences_and_graph():
    e = explainer()
    out = e.explain(np.array([1, 2]), np.array([True, True]), np.array([0]), np.array([LOVE]))
    said = sentences(out, 3)
    assert said[0] == "Because you loved one; 2 people who loved one also watched it"
    assert said[1] == "Because you loved one; 1 person who loved one also watched it" and said[2] is None
    items = {"anime_id": np.array([20, 30]), "name": np.array(["two", "three"]), "rank": np.array([1, 2]),
             "score": np.array([0.9, 0.8])}
    g = influence_graph(items, out)
    assert sorted(g.edges) == [(10, 20), (10, 30)] and g.nodes[10]["kind"] == "pick"
    assert abs(g.edges[10, 20]["weight"] - 0.8) < 1e-6
