import numpy as np
import pandas as pd
from model_contract import BLOCKS

from nostrade.dataset import Dataset
from nostrade.sequences import DISLIKE, LIKE, LOVE, Sequences
from nostrade.similarity import GENRE_WEIGHT, Cosines, agreement_vectors, max_per_segment, taste_vectors


def two_camps() -> Sequences:
    """40 people watched all six titles: half love 1-3 and dislike 4-6, half the other way round; item 7 is liked
    by everybody who saw it. Co-watching cannot tell the titles apart; rating agreement can."""
    camp_a = [[LOVE, LOVE, LOVE, DISLIKE, DISLIKE, DISLIKE, LIKE]] * 20
    camp_b = [[DISLIKE, DISLIKE, DISLIKE, LOVE, LOVE, LOVE, LIKE]] * 20
    return Sequences.from_lists([[1, 2, 3, 4, 5, 6, 7]] * 40, camp_a + camp_b)


def cosine(vectors, a, b):
    return float(vectors[a] @ vectors[b])


def test_rating_agreement_puts_titles_the_same_people_rate_alike_together():
    vectors = agreement_vectors(two_camps(), n_items=7, dim=3)
    assert vectors.shape == (8, 3) and not vectors[0].any()
    np.testing.assert_allclose(np.linalg.norm(vectors[1:7], axis=1), 1.0, rtol=1e-5)
    assert cosine(vectors, 1, 2) > 0.99 and cosine(vectors, 4, 5) > 0.99
    assert cosine(vectors, 1, 4) < -0.99  # watched by the same people, rated the opposite way


def test_a_repeated_title_counts_its_latest_feedback_once():
    once = agreement_vectors(two_camps(), n_items=7, dim=3)
    camp_a = [[LOVE, LOVE, LOVE, DISLIKE, DISLIKE, DISLIKE, LIKE, DISLIKE, LOVE]] * 20  # 1 disliked, then loved
    camp_b = [[DISLIKE, DISLIKE, DISLIKE, LOVE, LOVE, LOVE, LIKE, LOVE, DISLIKE]] * 20
    repeated = Sequences.from_lists([[1, 2, 3, 4, 5, 6, 7, 1, 1]] * 40, camp_a + camp_b)
    np.testing.assert_allclose(np.abs(agreement_vectors(repeated, n_items=7, dim=3) @ once.T),
                               np.abs(once @ once.T), atol=1e-5)


def test_taste_vectors_weigh_genres_in_by_genre_weight():
    items = pd.DataFrame({"iid": np.arange(1, 8), "item_id": np.arange(1, 8), "name": list("abcdefg"),
                          "genres": [["Drama"], ["Drama"], ["Comedy"], ["Drama"], ["Comedy"], ["Comedy"], ["Drama"]],
                          "type": ["TV"] * 7})
    train = two_camps()
    dataset = Dataset(items, train, np.arange(train.n_users), {"n_items": 7})
    taste, agreement = taste_vectors(dataset, train), agreement_vectors(train, 7)
    assert taste.shape[0] == 8 and not taste[0].any()
    # 1 and 4: opposite ratings, same genre; 1 and 3: same ratings, other genre
    for a, b, same_genre in [(1, 4, 1.0), (1, 3, 0.0), (1, 2, 1.0)]:
        expected = (1 - GENRE_WEIGHT) * cosine(agreement, a, b) + GENRE_WEIGHT * same_genre
        assert abs(cosine(taste, a, b) - expected) < 1e-5


def test_blocks_of_the_shared_contract_are_their_own_nearest():
    vectors = taste_vectors(BLOCKS.dataset, BLOCKS.train)
    similarity = vectors[1:] @ vectors[1:].T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    assert ((nearest // 6) == (np.arange(len(nearest)) // 6)).all()


def test_max_per_segment_is_each_segments_elementwise_max():
    rows = np.random.default_rng(0).normal(size=(9, 6)).astype(np.float32)
    counts = np.array([1, 4, 2, 2])
    ends = np.cumsum(counts)
    expected = np.stack([rows[end - n:end].max(axis=0) for n, end in zip(counts, ends)])
    np.testing.assert_array_equal(max_per_segment(rows, counts), expected)


def test_cosines_gathered_from_the_whole_matrix_match_a_product_per_call():
    unit = np.random.default_rng(1).normal(size=(40, 8)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    rows = np.array([3, 0, 39, 3])
    for first_column in (0, 1):
        gathered, computed = Cosines(unit, first_column), Cosines(unit, first_column, max_bytes=0)
        assert gathered.matrix is not None and computed.matrix is None
        expected = unit[rows] @ unit[first_column:].T
        np.testing.assert_allclose(gathered(rows), expected, atol=1e-6)
        np.testing.assert_allclose(computed(rows), expected, atol=1e-6)
