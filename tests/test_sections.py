"""The rows below the Top-K on the served default model (EASE on the embedded sample): filters, no repeats,
"Something different" outside the usual genres, the floor of genre-only picks, honest captions."""
import pandas as pd
import pytest

from nostrade.history import COLUMNS
from nostrade.sections import Filters, dislike_note, how_computed, rows, taste_rows, top_heading, usual_genres
from nostrade.sequences import DISLIKE, LIKE, LOVE
from predict import Recommender

STEINS_GATE, NARUTO, DEATH_NOTE, BLEACH = 9253, 20, 1535, 269


@pytest.fixture(scope="module")
def rec(ease_checkpoint, processed_anime) -> Recommender:
    return Recommender.load(ease_checkpoint, processed_anime)


def history_of(pairs) -> pd.DataFrame:
    return pd.DataFrame({"user_id": 1, "item_id": [a for a, _ in pairs], "feedback": [f for _, f in pairs],
                         "timestamp": float("nan"), "logged": True}, columns=COLUMNS)


PICKS = [(STEINS_GATE, LOVE), (NARUTO, LOVE), (DEATH_NOTE, LIKE), (BLEACH, DISLIKE)]


def page(rec, pairs, alpha=0.2, filters=Filters(), k=10):
    events = [(a, f, None) for a, f in pairs]
    top = rec.recommend(events, k=k, alpha=alpha, **filters.of_recommend()).items
    return top, rows(rec, events, history_of(pairs), alpha, filters, top["item_id"].tolist())


def test_usual_genres_are_those_of_at_least_a_quarter_of_the_picks():
    picks = [["Action", "Comedy"], ["Action", "Drama"], ["Action"], ["Romance"], ["Sci-Fi"], ["Sci-Fi"]]
    assert usual_genres(picks) == ["Action", "Sci-Fi"]  # 3/6 and 2/6 >= 1/4; the others 1/6
    assert usual_genres(picks, share=0.5) == ["Action"]
    assert usual_genres([]) == []


def test_captions_say_what_was_computed():
    assert how_computed("sequence+genre", 0.0, "ease") == "what fans of your titles watched and liked (EASE)"
    assert how_computed("sequence+genre", 1.0, "sasrec") == "your favourite genres only"
    assert how_computed("sequence+genre", 0.2, "sasrec") == "what fans of your titles watched and liked (SASRec), nudged 20% toward your genres"
    assert how_computed("genre+popularity", 0.2, "ease").startswith("your titles' genres and what is popular")
    assert top_heading(10, 10) == ("Top 10 for you", None)
    assert top_heading(6, 10) == ("Top 6 for you", "Only 6 of the K = 10 asked for pass the filters.")
    assert top_heading(0, 10)[0] == "No picks pass these filters"  # never "Top 0 for you"


def test_rows_in_page_order_never_repeat_a_title_or_show_a_rated_one(rec):
    top, found = page(rec, PICKS)
    assert [r.title for r in found] == ["Because you loved Naruto", "Similar to your taste", "Most popular",
                                        "Something different"]
    shown = top["item_id"].tolist() + [a for r in found for a in r.items["item_id"].tolist()]
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
    assert "none of your usual genres (" in different.caption and "what fans of your titles watched and liked (EASE), nudged 20% toward your genres" in \
        different.caption


def test_genre_only_rows_keep_the_popularity_floor(rec):
    floor = rec.model_min_members
    _, found = page(rec, PICKS, filters=Filters(genre_only_min_members=floor))
    taste = next(r for r in found if r.title == "Similar to your taste")
    assert (taste.items["members"] >= floor).all() and f"at least {floor:,} members" in taste.caption
    assert "your favourite genres only" in taste.caption
    top, _ = page(rec, PICKS, alpha=1.0, filters=Filters(genre_only_min_members=floor), k=50)
    assert (top["members"] >= floor).all()


def test_because_you_loved_names_only_clearly_similar_titles(rec):
    _, found = page(rec, PICKS)
    loved = found[0]
    assert len(loved.items) == 5 and (loved.items["similarity"] > rec.explainer.min_similarity).all()
    assert (loved.items["reason"] == "Fans of Naruto watch it too").all() and "cosine" not in loved.caption


def test_rows_below_the_top_k_do_not_depend_on_click_order(rec):
    """The same picks in three click orders: the same rows with the same titles ("Because you loved" names the
    best-known Love, not the latest)."""
    orders = [PICKS, PICKS[::-1], [PICKS[1], PICKS[3], PICKS[0], PICKS[2]]]
    pages = [[(r.title, r.items["item_id"].tolist()) for r in page(rec, order)[1]] for order in orders]
    assert pages[0] == pages[1] == pages[2]
    assert pages[0][0][0] == "Because you loved Naruto"  # more members than Steins;Gate, whichever was rated last


CLUSTERS = [{"name": "Sports", "genres": ["Sports"], "size": 50, "catalogue_size": None,
             "item_ids": []},
            {"name": "Watched with Naruto", "genres": [], "size": 40, "catalogue_size": 90, "item_ids": []}]


def test_taste_rows_obey_the_filters_never_repeat_and_show_what_their_name_says(rec):
    sports = rec.catalogue[rec.catalogue["genres"].map(lambda g: "Sports" in g)]
    others = rec.catalogue[rec.catalogue["genres"].map(lambda g: "Sports" not in g)]
    mixed = [*others["item_id"].head(4), *sports["item_id"].head(8)]  # the name holds for 8 of 12
    clusters = [{**CLUSTERS[0], "item_ids": [int(a) for a in mixed]},
                {**CLUSTERS[1], "item_ids": [int(a) for a in [*sports["item_id"].head(3),
                                                               *others["item_id"].head(20)]]}]
    on_page = {int(sports["item_id"].iloc[0])}
    found = taste_rows(rec, clusters, Filters(), on_page)
    assert [r.title for r in found] == ["Sports", "Watched with Naruto"]
    assert found[0].items["genres"].map(lambda g: g[0] == "Sports").all() and len(found[0].items) == 5
    shown = [a for r in found for a in r.items["item_id"].tolist()]
    assert len(shown) == len(set(shown)) and int(sports["item_id"].iloc[0]) not in shown  # once per page
    assert set(shown) <= on_page and found[1].caption == "90 titles (40 the model knows)"
    big_movies = rec.catalogue[(rec.catalogue["type"] == "Movie") & (rec.catalogue["members"] >= 300_000)]
    clusters[1]["item_ids"] += [int(a) for a in big_movies["item_id"]]
    movies = taste_rows(rec, clusters, Filters(types=("Movie",), min_members=300_000), set())
    assert len(big_movies) and [r.title for r in movies] == ["Watched with Naruto"]  # "Sports" has no such title
    assert (movies[0].items["type"] == "Movie").all() and (movies[0].items["members"] >= 300_000).all()
    few = [{**CLUSTERS[0], "item_ids": [int(a) for a in [*others["item_id"].head(4), *sports["item_id"].head(1)]]}]
    assert taste_rows(rec, few, Filters(), set()) == []  # 1 of 5 shown would be Sports: the name would not hold


def test_a_dislike_says_what_it_changed_and_nothing_when_it_changed_nothing(rec):
    loved = [(NARUTO, LOVE), (STEINS_GATE, LOVE)]
    for pairs in (loved, loved + [(BLEACH, DISLIKE)]):
        top = rec.recommend([(a, f, None) for a, f in pairs], k=10, alpha=0.2).items
        note = dislike_note(rec, history_of(pairs), top, 10, 0.2, Filters())
        without = rec.recommend([(a, f, None) for a, f in loved], k=10, alpha=0.2, exclude_ids=[BLEACH]).items
        changed = set(without["item_id"]) - set(top["item_id"])
        assert (note is None) == (pairs == loved)  # no Dislike: no note; Bleach's Dislike moves Soul Eater out
        if note:
            assert note.startswith(f"Your Dislikes changed {len(changed)} of these 10: ")
            assert all(name in note for name in rec.lookup(sorted(changed))["name"])


def test_cold_start_popular_row_does_not_repeat_the_top_k(rec):
    top, found = page(rec, [])
    assert [r.title for r in found] == ["Most popular"]
    assert not set(found[0].items["item_id"]) & set(top["item_id"]) and len(found[0].items) == 5
