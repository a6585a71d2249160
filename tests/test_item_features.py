"""Side-feature codes of titles (nostrade.item_features)."""
import numpy as np
import pandas as pd

from nostrade.item_features import N_BUCKETS, FeatureEncoding


def catalogue(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame({
        "genres": [["Action", "Drama"][: 1 + i % 2] for i in range(n)],
        "type": ["TV" if i % 3 else "Movie" for i in range(n)],
        "episodes": pd.array([i + 1 if i % 5 else pd.NA for i in range(n)], dtype="Int64"),
        "members": pd.array([10 * (i + 1) ** 2 for i in range(n)], dtype="Int64"),
        "rating_mean": np.linspace(5, 9, n),
        "year": pd.array([1990 + i for i in range(n)], dtype="Int64"),
    })


def test_codes_follow_the_values_and_missing_is_zero():
    items = catalogue()
    encoding = FeatureEncoding.fit(items, "anime")
    assert encoding.fields == ["type", "episodes", "members", "rating_mean", "year"]
    genre_index, codes, numeric = encoding.encode(items)
    assert genre_index.shape == (40, 2) and codes.shape == (40, 5) and numeric.shape == (40, 4)
    np.testing.assert_allclose(numeric[:, 3].mean(), 0, atol=1e-6)  # year, standardised over the fitted titles
    assert (numeric[::5, 0] == 0).all() and (np.diff(numeric[:, 1]) > 0).all()  # missing episodes 0; members rise
    assert (genre_index[1] == [1, 2]).all() and (genre_index[0] == [1, 0]).all()  # Action, Drama; padding 0
    members, episodes = codes[:, 2], codes[:, 1]
    assert (np.diff(members) >= 0).all() and members.min() == 1 and members.max() == N_BUCKETS
    assert (episodes[::5] == 0).all() and (episodes[1::5] > 0).all()
    assert (codes < np.array(encoding.field_sizes)).all()


def test_titles_outside_the_fitted_set_are_encoded_alike():
    encoding = FeatureEncoding.fit(catalogue(), "anime")
    other = pd.DataFrame({"genres": [["Drama", "Space"], []], "type": ["ONA", None],
                          "members": pd.array([10**9, pd.NA], dtype="Int64")})  # no episodes, rating, year columns
    genre_index, codes, numeric = encoding.encode(other)
    assert genre_index.tolist() == [[2, 0], [0, 0]]  # an unknown genre is dropped
    assert codes.tolist() == [[0, 0, N_BUCKETS, 0, 0], [0, 0, 0, 0, 0]]  # unknown type, missing values: 0
    assert numeric[0, 1] > 2 and (numeric[1] == 0).all()


def test_movielens_counts_and_means_of_its_own_ratings_are_left_out():
    encoding = FeatureEncoding.fit(catalogue(), "movielens")
    assert encoding.fields == ["type", "episodes", "year"]
    assert FeatureEncoding.from_dict(encoding.to_dict()) == encoding
