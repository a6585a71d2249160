import re

import pandas as pd
import pytest

from nostrade.events import CLEARED, SAVED, UNSAVED
from nostrade.sequences import DISLIKE, LIKE, LOVE
from nostrade.ui import (NO_RATING, RATING_COLUMN, SAVE_COLUMN, FeedbackEvent, edits_to_events, genre_colour,
                         option_of, poster_card_html)


@pytest.fixture
def shown():
    return pd.DataFrame({
        "item_id": [20, 1535, 16498],
        "name": ["Naruto", "Death Note", "Shingeki no Kyojin"],
        RATING_COLUMN: [NO_RATING, "Like", NO_RATING],
        SAVE_COLUMN: [False, False, True],
    })


def test_rating_edits_become_feedback_events(shown):
    edited = {0: {RATING_COLUMN: "Love"}, 2: {RATING_COLUMN: "Dislike"}}
    assert edits_to_events(shown, edited) == [FeedbackEvent(20, LOVE), FeedbackEvent(16498, DISLIKE)]


def test_clearing_a_rating_is_an_event(shown):
    assert edits_to_events(shown, {1: {RATING_COLUMN: NO_RATING}}) == [FeedbackEvent(1535, CLEARED)]
    assert edits_to_events(shown, {1: {RATING_COLUMN: None}}) == [FeedbackEvent(1535, CLEARED)]


def test_unchanged_cells_and_other_columns_give_nothing(shown):
    assert edits_to_events(shown, {1: {RATING_COLUMN: "Like"}, 0: {"name": "x"}}) == []
    assert edits_to_events(shown, {}) == []


def test_save_for_later_toggles(shown):
    edited = {"0": {SAVE_COLUMN: True}, "2": {SAVE_COLUMN: False}}  # string keys (JSON) work too
    assert edits_to_events(shown, edited) == [FeedbackEvent(20, SAVED), FeedbackEvent(16498, UNSAVED)]


def test_rating_and_save_in_one_row_are_two_events_in_row_order(shown):
    edited = {2: {RATING_COLUMN: "Like", SAVE_COLUMN: False}, 0: {RATING_COLUMN: "Dislike"}}
    assert edits_to_events(shown, edited) == [
        FeedbackEvent(20, DISLIKE), FeedbackEvent(16498, LIKE), FeedbackEvent(16498, UNSAVED)]


def test_bad_edits_are_refused(shown):
    with pytest.raises(ValueError, match="outside"):
        edits_to_events(shown, {3: {RATING_COLUMN: "Like"}})
    with pytest.raises(ValueError, match="'Meh'"):
        edits_to_events(shown, {0: {RATING_COLUMN: "Meh"}})


def test_option_of():
    assert [option_of(x) for x in (None, 0, 1, 2, 3)] == [NO_RATING, NO_RATING, "Dislike", "Like", "Love"]


def test_genre_colours_are_stable_and_cards_escape_titles():
    assert genre_colour("Action") == "#d64545"
    assert genre_colour("Vampire") == genre_colour("Vampire") != genre_colour("Samurai")
    assert all(re.fullmatch(r"#[0-9a-f]{6}", genre_colour(g)) for g in ("Vampire", "Samurai", "Action", None))
    card = poster_card_html("<Naruto & co>", ["Action", "Comedy"], "TV", "Because you loved X")
    assert "&lt;Naruto &amp; co&gt;" in card and "<Naruto" not in card
    assert "#d64545" in card and "Because you loved X" in card
    assert "<img" in poster_card_html("A", [], poster_url="https://example.org/a.jpg")
    assert "<img" not in card


def test_influence_png_draws_the_graph():
    import networkx as nx

    from nostrade.ui import influence_png
    graph = nx.DiGraph()
    graph.add_node(20, kind="pick", name="Naruto", feedback="Love")
    graph.add_node(1535, kind="recommendation", name="Death Note", rank=1, score=0.9)
    graph.add_node(99, kind="recommendation", name="Lonely", rank=2, score=0.1)
    graph.add_edge(20, 1535, weight=0.75)
    png = influence_png(graph, {1535: ["Mystery"]})
    assert png.startswith(b"\x89PNG")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > 300 and height > 50
    graph.add_edge(20, 99, weight=-0.2)  # a negative similarity draws a thin line, not an error
    assert influence_png(graph, {99: ["Vampire"]}) != png  # a genre without its own colour


def test_influence_labels_are_whole_titles_and_the_image_grows_to_hold_them():
    import networkx as nx

    from nostrade.ui import influence_png, label
    long = "Fullmetal Alchemist: Brotherhood Specials"
    assert label(long).replace("\n", " ") == long and max(map(len, label(long).split("\n"))) <= 30
    assert label("Steins;Gate") == "Steins;Gate"

    def width_with(name: str) -> int:
        graph = nx.DiGraph()
        graph.add_node(1, kind="pick", name=name, feedback="Love")
        graph.add_node(2, kind="recommendation", name=name, rank=1, score=1.0)
        graph.add_edge(1, 2, weight=0.5)
        return int.from_bytes(influence_png(graph)[16:20], "big")

    assert width_with("Fullmetal Alchemist") > width_with("K") + 100  # the canvas is cropped to the text drawn


def test_an_unknown_type_is_left_out_never_nan():
    for unknown in (None, float("nan"), "nan", ""):
        card = poster_card_html("Steins;Gate 0", ["Sci-Fi", "Thriller"], unknown)
        assert "nan" not in card.lower() and '<div class="nostrade-meta" style="font-size:0.75rem;opacity:0.75">' \
            'Sci-Fi, Thriller</div>' in card
    assert "TV · Sci-Fi" in poster_card_html("A", ["Sci-Fi"], "TV")
    assert 'title="A very long title indeed"' in poster_card_html("A very long title indeed", [])  # its tooltip


def test_a_badge_is_escaped_and_shown_only_when_given():
    assert "nostrade-badge" not in poster_card_html("A", ["Action"])
    card = poster_card_html("A", ["Action"], badge="<new>")
    assert "nostrade-badge" in card and "&lt;new&gt;" in card
