"""The demo's rows below the Top-K, computed so that each says what it is and none repeats another.

A page (code/app.py) shows the Top-K, then these rows, in this order:
- "Because you loved X": the titles closest to one of the person's Loves (the model's item space, else
  genres), only those clearly similar (the explainer's floors, nostrade.explain.similarity_floor); X is the
  best-known of their Loves (most members, then the smaller id), so the row does not depend on click order;
- "Similar to your taste": the genre profile alone (α = 1);
- "Most popular": the most members;
- "Something different": the page's own scoring (its α) over the titles that have none of the person's
  usual genres: the genres found in at least USUAL_GENRE_SHARE of their Like/Love picks;
- "Browse by taste" (``taste_rows``): a row per taste cluster (nostrade.clusters), its titles carrying the
  genres it is named by first.
Every row obeys the page's filters (genres, types, minimum members, the floor of genre-only picks), leaves
out what the person rated, and leaves out every title the Top-K or an earlier row shows: on one page a
title appears once. A row is computed by predict.Recommender (the one scoring path); this module only
chooses what each row asks for and says how it was computed. ``dislike_note`` says what the person's
Dislikes changed in the Top-K (nothing when they changed nothing).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nostrade.clusters import NAME_MIN_SHARE
from nostrade.history import as_events
from nostrade.scoring import PATH_CONTENT, PATH_SEQUENCE
from nostrade.sequences import DISLIKE, LOVE

USUAL_GENRE_SHARE = 0.25
MODEL_NAMES = {"ease": "EASE", "sasrec": "SASRec", "ranker": "two-stage ranker"}
SIMILAR_POOL = 500  # closest titles looked at for "Because you loved" (predict.MAX_K), before filters


@dataclass(frozen=True)
class Filters:
    """The page's filters; ``genre_only_min_members``: see predict.Recommender.recommend."""
    genres: tuple = ()
    types: tuple = ()
    min_members: int | None = None
    genre_only_min_members: int | None = None

    def of_recommend(self) -> dict:
        return {"genres": list(self.genres) or None, "types": list(self.types) or None,
                "min_members": self.min_members, "genre_only_min_members": self.genre_only_min_members}


@dataclass(frozen=True)
class Row:
    title: str
    caption: str
    items: pd.DataFrame  # predict's item columns (at least item_id, name, genres, type, reason)


def how_computed(path: str, alpha: float, model_kind: str) -> str:
    """What a ranking was computed from, in a fan's words (the model's name in brackets, for the curious)."""
    model = MODEL_NAMES.get(model_kind, model_kind)
    if path == PATH_SEQUENCE:
        if alpha <= 0.0:
            return f"what fans of your titles watched and liked ({model})"
        if alpha >= 1.0:
            return "your favourite genres only"
        return f"what fans of your titles watched and liked ({model}), nudged {alpha:.0%} toward your genres"
    if path == PATH_CONTENT:
        return "your titles' genres and what is popular (the titles you rated are new to the model)"
    return "the most popular titles (rate a title you know for personal picks)"


def top_heading(n_shown: int, k: int) -> tuple[str, str | None]:
    """The Top-K's heading, with the count actually shown, and a note when fewer than K passed the filters."""
    if n_shown == 0:
        return "No picks pass these filters", "Loosen the filters in the sidebar to see recommendations."
    note = None if n_shown >= k else f"Only {n_shown} of the K = {k} asked for pass the filters."
    return f"Top {n_shown} for you", note


def usual_genres(genre_lists: Sequence[Iterable[str]], share: float = USUAL_GENRE_SHARE) -> list[str]:
    """The genres found in at least ``share`` of the titles (a person's Like/Love picks), sorted."""
    counts = Counter(g for genres in genre_lists for g in set(genres))
    return sorted(g for g, n in counts.items() if n >= share * len(genre_lists))


def rows(rec, events: list, history: pd.DataFrame, alpha: float, filters: Filters, shown: Iterable[int],
         n: int = 5) -> list[Row]:
    """The rows in page order. ``rec``: a predict.Recommender; ``history``: the person's current history
    (nostrade.history columns, oldest first); ``shown``: the item ids already on the page (the Top-K)."""
    on_page = set(int(a) for a in shown) | set(history["item_id"].astype(int).tolist())
    kind = rec.model.kind
    out: list[Row] = []

    def add(title: str, caption: str, items: pd.DataFrame) -> None:
        items = items.head(n)
        on_page.update(items["item_id"].astype(int).tolist())
        out.append(Row(title, caption, items.reset_index(drop=True)))

    loved = rec.lookup(history.loc[history["feedback"] == LOVE, "item_id"])
    if len(loved):
        best_known = loved.sort_values(["members", "item_id"], ascending=[False, True], kind="stable").iloc[0]
        anchor, name = int(best_known["item_id"]), best_known["name"]
        add(f"Because you loved {name}", *_closest_to(rec, anchor, name, filters, on_page))
    if events:
        taste = rec.recommend(events, k=n, alpha=1.0, exclude_ids=sorted(on_page), **filters.of_recommend())
        add("Similar to your taste", f"How: {how_computed(taste.path, 1.0, kind)}{_floor_note(filters)}.",
            taste.items)
    popular = rec.popular(k=n, genres=list(filters.genres) or None, types=list(filters.types) or None,
                          min_members=filters.min_members, exclude_ids=sorted(on_page))
    add("Most popular", "The titles in the most people's lists, minus what you rated and what is shown above.",
        popular.assign(reason=popular["members"].map("in {:,} people's lists".format)))
    liked = history.loc[history["feedback"] != DISLIKE, "item_id"]
    usual = usual_genres(rec.lookup(liked)["genres"].tolist()) if len(liked) else []
    if events and usual:
        different = rec.recommend(events, k=n, alpha=alpha, exclude_genres=usual, exclude_ids=sorted(on_page),
                                  **filters.of_recommend())
        add("Something different",
            f"How: {how_computed(different.path, alpha, kind)}, over titles with none of your usual genres "
            f"({', '.join(usual)}: each in at least {USUAL_GENRE_SHARE:.0%} of your Like/Love picks)"
            f"{_floor_note(filters)}.", different.items)
    return out


def _closest_to(rec, anchor: int, name: str, filters: Filters, on_page: set) -> tuple[str, pd.DataFrame]:
    """(caption, titles) of "Because you loved": the anchor's clearly similar titles that pass the filters."""
    similar = rec.similar(anchor, k=min(SIMILAR_POOL, len(rec.catalogue) - 1))
    by_model = (similar["source"] == "embedding").all()
    floor = rec.explainer.min_similarity if by_model else rec.explainer.min_genre_similarity
    rows_ = rec.rows_of(similar["item_id"].to_numpy(np.int64))
    keep = rec.filter_mask(list(filters.genres) or None, list(filters.types) or None, filters.min_members,
                           exclude_ids=sorted(on_page))[rows_] & (similar["similarity"].to_numpy() > floor)
    if not by_model and filters.genre_only_min_members is not None:
        keep &= similar["members"].to_numpy() >= filters.genre_only_min_members
    similar = similar[keep]
    if by_model:
        caption = f"What fans of {name} watch most, only titles clearly close to it."
        said = f"Fans of {name} watch it too"
    else:
        caption = f"Titles with the genres of {name}, only clearly close ones."
        said = f"Same genres as {name}"
    return caption, similar.assign(reason=said)


def _floor_note(filters: Filters) -> str:
    floor = filters.genre_only_min_members
    return "" if floor is None else f"; titles ranked by genres alone need at least {floor:,} members"


def taste_rows(rec, clusters: list[dict], filters: Filters, on_page: set, n: int = 5) -> list[Row]:
    """A row per taste cluster (nostrade.clusters.taste_rows' dicts), in their order: its representatives that pass
    the filters and are not on the page yet (``on_page``, updated), those carrying every genre of its name first
    (and on each title, its named genres first); a cluster is left out where fewer than NAME_MIN_SHARE of the titles it would show carry its name's genres."""
    passes = rec.filter_mask(list(filters.genres) or None, list(filters.types) or None, filters.min_members)
    out = []
    for cluster in clusters:
        ids = np.array([a for a in cluster["item_ids"] if a not in on_page], dtype=np.int64)
        rows_ = rec.rows_of(ids)
        items = rec.lookup(ids[(rows_ >= 0) & passes[rows_]])
        named = set(cluster["genres"])
        carries = items["genres"].map(lambda g: named <= set(g)).to_numpy(bool)
        order = np.argsort(~carries, kind="stable")[:n]
        if not len(order) or carries[order].mean() < NAME_MIN_SHARE:
            continue
        items = items.iloc[order].reset_index(drop=True)
        # the named genres first, so that a card's short genre list shows them
        items["genres"] = items["genres"].map(lambda g: sorted(g, key=lambda x: x not in named))
        on_page.update(items["item_id"].astype(int).tolist())
        size = f"{cluster['size']:,} titles" if cluster["catalogue_size"] is None else \
            f"{cluster['catalogue_size']:,} titles ({cluster['size']:,} the model knows)"
        out.append(Row(cluster["name"], size, items))
    return out


def dislike_note(rec, history: pd.DataFrame, top: pd.DataFrame, k: int, alpha: float,
                 filters: Filters) -> str | None:
    """What the person's Dislikes (``history``: nostrade.history columns) changed in the Top-K ``top``: the titles
    that left it and came in, against the same request without the Dislikes (the disliked titles still left out);
    None where they changed nothing."""
    disliked = history["feedback"] == DISLIKE
    if not disliked.any() or top.empty:
        return None
    excluded = history.loc[disliked, "item_id"].astype(int).tolist()
    without = rec.recommend(as_events(history[~disliked]), k=k, alpha=alpha, explain=False, exclude_ids=excluded,
                            **filters.of_recommend())
    shown, before = top["item_id"].tolist(), without.items["item_id"].tolist()
    left, came = [a for a in before if a not in shown], [a for a in shown if a not in before]
    if not left:
        return None
    names = lambda ids: ", ".join(rec.lookup(ids)["name"])
    return (f"Your Dislikes changed {len(left)} of these {len(shown)}: {names(left)} left; {names(came)} came in "
            "(titles like the ones you disliked rank lower).")
