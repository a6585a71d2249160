"""The rows below the Top-K on the served default model (EASE on the embedded sample): filters, no repeats,
"Something different" outside the usual genres, the floor of genre-only picks, honest captions."""
import pandas as pd
import pytest

from nostrade.history import COLUMNS
from nostrade.sections import Filters, how_computed, rows, top_heading, usual_genres
from nostrade.sequences import DISLIKE, LIKE, LOVE
from predict import Recommender

STEINS_GATE, NARUTO, DEATH_NOTE, BLEACH = 9253, 20, 1535, 269


@pytest.fixture(scope="module")
def rec(ease_checkpoint, processed_anime) -> Recommender:
    return Recommender.load(ease_checkpoint, processed_anime)


def history_of(pairs) -> pd.DataFrame:
    return pd.DataFrame({"user_id": 1, "anime_id": [a for a, _ in pairs], "feedback": [f for _, f in pairs],
                         "timestamp": float("nan"), "logged": True}, columns=COLUMNS)


PICKS = [(STEINS_GATE, LOVE), (NARUTO, LOVE), (DEATH_NOTE, LIKE), (BLEACH, DISLIKE)]


def page(rec, pairs, alpha=0.2, filters=Filters(), k=10):
    events = [(a, f, None) for a, f in pairs]
    top = rec.recommend(events, k=k, alpha=alpha, **filters.of_recommend()).items
    return top, rows(rec, events, history_of(pairs), alpha, filters, top["anime_id"].tolist())


def test_usual_genres_are_those_of_at_least_a_quarter_of_the_picks():
    picks = [["Action", "Comedy"], ["Action", "Drama"], ["Action"], ["Romance"], ["Sci-Fi"], ["Sci-Fi"]]
    assert usual_genres(picks) == ["Action", "Sci-Fi"]  # 3/6 and 2/6 >= 1/4; the others 1/6
    assert usual_genres(picks, share=0.5) == ["Action"]
    assert usual_genres([]) == []


def test_captions_say_what_was_computed():
    assert how_computed("sequence+genre", 0.0, "ease") == "EASE model only (α = 0)"
    assert how_computed("sequence+genre", 1.0, "sasrec") == "genre profile only (α = 1)"
    assert how_computed("sequence+genre", 0.2, "sasrec") == "SASRec model + genre blend (α = 0.20)"
    assert how_computed("genre+popularity", 0.2, "ease").startswith("cold start: your titles' genres + popularity")
    assert top_heading(10, 10) == ("Top 10 for you", None)
    assert top_heading(6, 10) == ("Top 6 for you", "Only 6 of the K = 10 asked for pass the filters.")


def test_rows_in_page_order_never_repeat_a_title_or_show_a_rated_one(rec):
    top, found = page(rec, PICKS)
    assert [r.title for r in found] == ["Because you loved Naruto", "Similar to your taste", "Popular right now",
                                        "Something different"]
    shown = top["anime_id"].tolist() + [a for r in found for a in r.items["anime_id"].tolist()]
    assert len(shown) == len(set(shown)) == 10 + 4 * 5
    assert not set(shown) & {a for a, _ in PICKS}


def test_every_row_obeys_the_filters(rec):
    filters = Filters(genres=("Comedy", "Romance"), types=("TV",), min_members=20_000)
    top, found = page(rec, PICKS, filters=filters)
    for items in [top] + [r.items for r in found]:
        assert len(items)
        assert (items["type"] == "TV").all() and (items["members"] >= 20_000).all()
        assert items["genres"].map(lambda g: bool({"Comedy", "Romance"} & set(g))).all()


def test_something_different_has_none_of_the_usual_genres(rec):
    _, found = page(rec, PICKS)
    different = next(r for r in found if r.title == "Something different")
    usual = set(usual_genres(rec.lookup([STEINS_GATE, NARUTO, DEATH_NOTE])["genres"].tolist()))
    assert {"Sci-Fi", "Thriller", "Shounen", "Mystery"} <= usual  # a quarter of 3 picks: each genre of one
    assert len(different.items) == 5 and not different.items["genres"].map(lambda g: bool(usual & set(g))).any()
    assert "none of your usual genres (" in different.caption and "EASE model + genre blend (α = 0.20)" in \
        different.caption


def test_genre_only_rows_keep_the_popularity_floor(rec):
    floor = rec.model_min_members
    _, found = page(rec, PICKS, filters=Filters(genre_only_min_members=floor))
    taste = next(r for r in found if r.title == "Similar to your taste")
    assert (taste.items["members"] >= floor).all() and f"at least {floor:,} members" in taste.caption
    assert "genre profile only (α = 1)" in taste.caption
    top, _ = page(rec, PICKS, alpha=1.0, filters=Filters(genre_only_min_members=floor), k=50)
    assert (top["members"] >= floor).all()


def test_because_you_loved_names_only_clearly_similar_titles(rec):
    _, found = page(rec, PICKS)
    loved = found[0]
    similarity = loved.items["reason"].str.extract(r"similarity ([0-9.]+) to Naruto")[0].astype(float)
    assert len(loved.items) == 5 and (similarity > rec.explainer.min_similarity).all()
    assert f"cosine above {rec.explainer.min_similarity:.2f}" in loved.caption


def test_cold_start_popular_row_does_not_repeat_the_top_k(rec):
    top, found = page(rec, [])
    assert [r.title for r in found] == ["Popular right now"]
    assert not set(found[0].items["anime_id"]) & set(top["anime_id"]) and len(found[0].items) == 5
