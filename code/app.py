"""Nostrade Engine demo: rate titles, watch the recommendations change, see why; every click is logged.

    streamlit run code/app.py

Settings (environment variables; relative paths are taken from the repository root):
    NOSTRADE_DATA         processed folder (make_processed_data.py)      default data/processed
    NOSTRADE_CHECKPOINT   model checkpoint                               default checkpoints/model.pt
    NOSTRADE_FINETUNED    what "Retrain for everyone" writes             default <checkpoint>.finetuned.pt
    NOSTRADE_EVENTS       SQLite event log (nostrade.events)             default data/events.db
    NOSTRADE_CATALOGUE    full catalogue; default: the file recorded in the data's meta.json
    NOSTRADE_CLUSTERS     taste clusters (python -m nostrade.clusters)   default artifacts/clusters.json
    NOSTRADE_TRAIN_ARGS   extra flags for the in-app "train the default model" run (e.g. "--epochs 5")

Scoring, blending, explanations and search are predict.py's, the rows below the Top-K nostrade.sections';
this file only lays them out. The person's picks live in the event log, not in the browser: a click shows
up once it is stored.

"Retrain for everyone" fine-tunes the served model on the event log (nostrade.finetune: EASE is
refitted, SASRec trains a few epochs) and writes the result to NOSTRADE_FINETUNED only if its validation
NDCG@10 is not worse; the checkpoint itself (which git may track) is never overwritten. The page serves
the fine-tuned file while it descends from the checkpoint (a later `make train` wins again) and loads.
"""
from __future__ import annotations

import os
import secrets
import shlex
import sqlite3
import time
import uuid
from pathlib import Path

import networkx as nx
import pandas as pd
import streamlit as st

from nostrade import clusters, finetune, prep, sections, train
from nostrade.dataset import sha256_of
from nostrade.events import EventLog, current_saved
from nostrade.history import COLUMNS as HISTORY_COLUMNS, UserHistories, as_events
from nostrade.sequences import FEEDBACK_NAMES
from nostrade.sources import load_anime_catalogue
from nostrade.ui import (CODE_OF_OPTION, PAGE_CSS, RATING_COLUMN, RATING_OPTIONS, SAVE_COLUMN, FeedbackEvent,
                         card_row_html, edits_to_events, influence_png, option_of, poster_card_html)
from predict import Recommender, use_threads

REPO_ROOT = Path(__file__).resolve().parents[1]
CATALOGUE_ROWS = 500
CARDS_PER_ROW = 5
ECHO_CHARS = 40  # of a search query said back ("No title matches ..."): a long paste is not echoed in full
WRAPPING_ROW_PX = 90  # st.dataframe wraps cell text only with rows taller than 4rem: three lines, whole titles
FROM_FEATURES_BADGE = "new to the model: scored from its features"  # a title outside the id vocabulary
DEMO_USER_BASE = 1_000_000_000  # demo users get ids far above the anime data's (< 100,000)


def setting(name: str, default: str) -> Path:
    path = Path(os.environ.get(name) or default)
    return path if path.is_absolute() else REPO_ROOT / path


DATA_DIR = setting("NOSTRADE_DATA", "data/processed")
CHECKPOINT = setting("NOSTRADE_CHECKPOINT", "checkpoints/model.pt")
FINETUNED = setting("NOSTRADE_FINETUNED", str(CHECKPOINT.with_name(f"{CHECKPOINT.stem}.finetuned{CHECKPOINT.suffix}")))
EVENTS_DB = setting("NOSTRADE_EVENTS", "data/events.db")
CATALOGUE = setting("NOSTRADE_CATALOGUE", "") if os.environ.get("NOSTRADE_CATALOGUE") else None
CLUSTERS = setting("NOSTRADE_CLUSTERS", "artifacts/clusters.json")
use_threads(1)  # one small request per click: extra threads only add overhead here


# ---------------------------------------------------------------------------------------------------
# Cached resources: the model is reloaded when the checkpoint file changes (new inode, size or mtime).
# ---------------------------------------------------------------------------------------------------
def file_version(path: Path) -> tuple | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def served_checkpoint() -> Path:
    """The fine-tuned checkpoint while it descends from the checkpoint and loads, else the checkpoint and why
    (nostrade.finetune.served_checkpoint)."""
    choice = finetune.served_checkpoint(CHECKPOINT, FINETUNED, DATA_DIR)
    if choice.reason:
        st.warning(choice.reason)
    return choice.path


@st.cache_resource(max_entries=2, show_spinner="Loading the model…")
def load_recommender(checkpoint: str, data: str, catalogue: str | None, version: tuple) -> tuple[Recommender, str]:
    del version  # part of the cache key only
    return Recommender.load(checkpoint, data, catalogue_path=catalogue), sha256_of(Path(checkpoint))


@st.cache_data(max_entries=64, show_spinner=False)
def cached_search(_rec: Recommender, model_hash: str, query: str, limit: int) -> pd.DataFrame:
    """predict's title search, cached per model and query (a page asks the same query on every re-run)."""
    return _rec.search(query, limit=limit)


@st.cache_data(max_entries=16, show_spinner=False)
def most_popular(_rec: Recommender, model_hash: str, genres: tuple, types: tuple) -> pd.DataFrame:
    """The catalogue's default view: predict's popularity ranking with its details (cached per filters)."""
    return _rec.lookup(_rec.popular(k=CATALOGUE_ROWS, genres=list(genres), types=list(types))["item_id"])


@st.cache_data(max_entries=4, show_spinner=False)
def cached_taste_rows(path: str, iid_map_sha256: str, version: tuple) -> list[dict]:
    del version  # part of the cache key only: a new clusters file is read again
    return clusters.taste_rows(path, iid_map_sha256)


@st.cache_resource
def event_log(path: str) -> EventLog:
    return EventLog(path)


@st.cache_data(max_entries=1)
def popular_catalogue(path: str, n: int = 20) -> pd.DataFrame:
    """Most-members titles of the raw catalogue: what the page shows while no model exists yet."""
    catalogue = load_anime_catalogue(path).sort_values("members", ascending=False, kind="stable").head(n)
    return catalogue.assign(genres=catalogue["genres"].map(", ".join))[["name", "genres", "type", "members"]]


# ---------------------------------------------------------------------------------------------------
# Session: who is clicking, and writing their clicks to the log
# ---------------------------------------------------------------------------------------------------
def current_user() -> int:
    """The demo user id: from ?user= in the URL, else a new random one put there (a reload keeps it)."""
    if "user_id" not in st.session_state:
        given = st.query_params.get("user", "")
        st.session_state.user_id = int(given) if given.isdigit() else DEMO_USER_BASE + secrets.randbelow(10**9)
        st.session_state.session_id = uuid.uuid4().hex
        st.session_state.editor_version = 0
    st.query_params["user"] = str(st.session_state.user_id)
    return st.session_state.user_id


def record(events: list[FeedbackEvent]) -> None:
    """Append each event (one durable transaction each); a failure is shown, never hidden."""
    try:
        log = event_log(str(EVENTS_DB))
        for event in events:
            log.append(st.session_state.user_id, event.item_id, event.feedback_type,
                       session_id=st.session_state.session_id)
    except (sqlite3.Error, OSError, ValueError, RuntimeError) as e:
        st.session_state.flash = f"Could not store your click in {EVENTS_DB}: {e}"


EDITORS = ("picks", "catalogue")


def editor_key(name: str) -> str:
    return f"{name}_editor_{st.session_state.editor_version}"


def apply_table_edits() -> None:
    """Edits made in a feedback table since the last run -> events -> log, before the page reads the log.

    The tables are then drawn afresh (a new key), showing the ratings as stored."""
    pending = []
    for name in EDITORS:
        edits = st.session_state.get(editor_key(name)) or {}
        if edits.get("edited_rows") and f"{name}_shown" in st.session_state:
            try:
                pending += edits_to_events(st.session_state[f"{name}_shown"], edits["edited_rows"])
            except ValueError as e:
                st.session_state.flash = str(e)
    if pending:
        record(pending)
    if pending or "flash" in st.session_state:
        st.session_state.editor_version += 1


def on_quick_rate(title_key: str, feedback_key: str = "pick_feedback", query_key: str | None = "pick_query") -> None:
    item_id, choice = st.session_state.get(title_key), st.session_state.get(feedback_key)
    if item_id is None or not choice:
        st.session_state.flash = "Choose a title and Dislike, Like or Love first."
        return
    record([FeedbackEvent(int(item_id), CODE_OF_OPTION[choice])])
    if query_key:
        st.session_state[query_key] = ""
    st.session_state[feedback_key] = None  # each rating is chosen afresh: a Dislike never carries over


def on_clear_all(history: pd.DataFrame) -> None:
    """Clear every pick, keeping them (oldest first) for "Undo"."""
    st.session_state.cleared_picks = list(zip(history["item_id"].astype(int), history["feedback"].astype(int)))
    record([FeedbackEvent(a, CODE_OF_OPTION["—"]) for a, _ in st.session_state.cleared_picks])


def on_undo_clear() -> None:
    """Rate the cleared picks again, in their old order, with their old ratings."""
    record([FeedbackEvent(a, feedback) for a, feedback in st.session_state.pop("cleared_picks", [])])


# ---------------------------------------------------------------------------------------------------
# No model yet: say so, show popular titles, offer to train the default model
# ---------------------------------------------------------------------------------------------------
def train_default_model(progress) -> str | None:
    """Prepare the embedded sample if needed, then run `python -m nostrade.train` in this process (the default
    model: --model auto's choice by validation, under a minute on the order-free sample; the page follows
    SASRec's epochs where it is a candidate);
    None when done, else what went wrong. Leaving or re-running the page stops SASRec at the next epoch."""
    if not (DATA_DIR / "meta.json").exists():
        progress.progress(0.0, text="Preparing the embedded anime sample…")
        artifacts = REPO_ROOT / "artifacts" if DATA_DIR == REPO_ROOT / "data" / "processed" else DATA_DIR
        try:
            prep.run(prep.PrepConfig(source="anime", out=DATA_DIR, artifacts=artifacts))
        except (ValueError, OSError) as e:
            return f"preparing {DATA_DIR}: {e}"

    def show(record: dict, epochs: int) -> None:
        progress.progress(record["epoch"] / epochs, text=f"Training SASRec: epoch {record['epoch']} of at most "
                                                         f"{epochs} (stops early when validation stops improving)")

    progress.progress(0.0, text="Training the default model…")
    default = CHECKPOINT == REPO_ROOT / "checkpoints" / "model.pt"
    metrics = REPO_ROOT / "artifacts" / "metrics.json" if default else CHECKPOINT.with_suffix(".metrics.json")
    argv = ["--data", str(DATA_DIR), "--out", str(CHECKPOINT), "--metrics", str(metrics), "--no-progress",
            *shlex.split(os.environ.get("NOSTRADE_TRAIN_ARGS", ""))]
    try:
        status = train.main(argv, on_epoch=show)
    except SystemExit as e:  # argparse refused NOSTRADE_TRAIN_ARGS
        status = e.code
    finally:
        use_threads(1)  # training set its own (process-wide) thread count
    return None if status == 0 else f"exit status {status} (the message is in the app's log)"


def no_model_page(problem: str) -> None:
    st.warning(problem)
    st.markdown("The demo needs a trained model. Train the small default model on the embedded anime "
                "sample here (seconds on a laptop CPU), or run `make train` in a terminal.")
    if st.button("Train the default model", type="primary", key="train"):
        failure = train_default_model(st.progress(0.0, text="Starting…"))
        if failure is None:
            st.rerun()
        st.error(f"Training failed: {failure}")
    catalogue = CATALOGUE or prep.DEFAULT_ITEMS
    st.subheader("Popular titles meanwhile")
    try:
        st.dataframe(popular_catalogue(str(catalogue)), hide_index=True, width="stretch")
    except (OSError, ValueError) as e:
        st.info(f"No catalogue to show ({e}).")


# ---------------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------------
def cards(frame: pd.DataFrame, rec: Recommender, reasons: bool = True) -> None:
    """A row of poster cards (placeholders in the main genre's colour; the poster when the catalogue has one)."""
    if frame.empty:
        st.caption("Nothing to show with these settings.")
        return
    posters = rec.catalogue.set_index("item_id")["poster_url"] if "poster_url" in rec.catalogue else None
    html = []
    for row in frame.head(CARDS_PER_ROW).itertuples():
        url = posters.get(row.item_id) if posters is not None else None
        reason = str(getattr(row, "reason", "") or "") if reasons else None
        badge = FROM_FEATURES_BADGE if getattr(row, "from_features", False) else None
        html.append(poster_card_html(row.name, row.genres, row.type, reason, url if isinstance(url, str) else None,
                                     badge))
    st.html(card_row_html(html))


@st.cache_data(max_entries=64, show_spinner=False)
def influence_image(nodes: tuple, edges: tuple, genres: tuple) -> bytes:
    """influence_png, cached by the graph's content (the same picks and results are not drawn twice)."""
    graph = nx.DiGraph()
    graph.add_nodes_from((n, dict(data)) for n, data in nodes)
    graph.add_weighted_edges_from(edges)
    return influence_png(graph, dict(genres))


def draw_influence(graph: nx.DiGraph, rec: Recommender) -> None:
    if graph.number_of_edges() == 0:
        st.caption("No influence graph yet: it links your Like/Love picks to the recommendations they explain.")
        return
    nodes = tuple((n, tuple(sorted(d.items()))) for n, d in graph.nodes(data=True))
    edges = tuple((u, v, float(w)) for u, v, w in graph.edges(data="weight"))
    genres = tuple((n, tuple(g)) for n, g in rec.lookup(list(graph.nodes))[["item_id", "genres"]].itertuples(index=False))
    st.image(influence_image(nodes, edges, genres), width="stretch",
             caption="Your picks → recommendations; line width = similarity (model embedding, else genres); "
                     "only clearly similar pairs are linked")


def explanation_table(out) -> pd.DataFrame:
    names = out.items.set_index("item_id")["name"]
    why = out.explanations
    return pd.DataFrame({
        "Recommended": why["item_id"].map(names),
        "Because of your pick": why["pick_name"],
        "You said": why["pick_feedback"],
        "Similarity (model)": why["similarity"].round(3),
        "Genre similarity": why["genre_similarity"].round(3),
        "Shared genres": why["shared_genres"].map(", ".join),
        "Watched both": why["co_watched"],
        "Loved pick, watched it": why["co_loved"],
    })


def recommendation_table(items: pd.DataFrame) -> pd.DataFrame:
    table = pd.DataFrame({"#": items["rank"], "Title": items["name"], "Why": items["reason"],
                          "Type": items["type"].fillna(""), "Score": items["score"].round(3),
                          "Genres": items["genres"].map(", ".join), "Source": items["source"]})
    if items["retrieved_by"].map(len).any():  # a two-stage ranker: the generators that found each title
        table["Found by"] = items["retrieved_by"].map(", ".join)
    if items["from_features"].any():  # a features model: titles outside its id vocabulary, scored from features
        table["From features"] = items["from_features"]
    return table


# ---------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------
def sidebar(rec: Recommender) -> dict:
    bar = st.sidebar
    bar.header("Settings")
    # on by default only where the blend won on the validation events (train chose rec.default_alpha there)
    blend_on = bar.toggle("Genre blend", value=rec.default_alpha > 0, key="blend",
                          help="final = (1-α)·model + α·genre similarity")
    alpha = bar.slider("α (genre share)", 0.0, 1.0, rec.default_alpha or 0.2, 0.05, key="alpha", disabled=not blend_on,
                       help="0: the model only; 1: the genre profile only")
    k = bar.slider("K (how many)", 5, 50, 10, 1, key="k")
    bar.subheader("Filters")
    bar.caption("They apply to every row of recommendations on the page.")
    genres = bar.multiselect("Genres (any of)", rec.genres, key="filter_genres")
    types = bar.multiselect("Types", rec.types, key="filter_types")
    min_members = bar.number_input("Minimum members", 0, 10_000_000, 0, 1000, key="min_members")
    floor = bar.number_input("Minimum members of genre-only picks", 0, 10_000_000, rec.model_min_members, 1000,
                             key="genre_floor",
                             help="For titles that genres alone rank (α = 1, a cold start, a title the model "
                                  "does not know). Default: the fewest members of a title the model knows.")
    live = bar.toggle("Live update", value=True, key="live",
                      help="Update the Top-K after every change; when off, press Predict")
    return {"alpha": alpha if blend_on else 0.0, "k": k, "live": live,
            "filters": sections.Filters(tuple(genres), tuple(types), int(min_members) or None, int(floor))}


def developer_details(rec: Recommender, checkpoint: Path, model_hash: str) -> None:
    with st.sidebar.expander("Developer details"):
        st.caption(f"User {st.session_state.user_id} · model `{checkpoint}` ({rec.model.kind}) sha256 "
                   f"{model_hash[:12]} · events in `{EVENTS_DB}` · data `{DATA_DIR}`")


def onboarding(rec: Recommender, model_hash: str) -> None:
    st.subheader("Rate a title")
    query = st.text_input("Find a title you know", key="pick_query", placeholder="e.g. naruto, shingeki, death note")
    found = cached_search(rec, model_hash, query.strip(), 20) if query.strip() else rec.lookup([])
    labels = dict(zip(found["item_id"].tolist(), (f"{n} ({t or '?'})" for n, t in zip(found["name"], found["type"]))))
    title_key = f"pick_title:{query.strip()}"  # a new search starts from its best match
    st.selectbox("Title", list(labels), format_func=labels.get, key=title_key, index=0 if labels else None,
                 placeholder="type above to search")
    st.radio("Your rating", list(FEEDBACK_NAMES.values())[::-1], horizontal=True, key="pick_feedback", index=None)
    st.button("Rate", on_click=on_quick_rate, args=(title_key,), disabled=not labels, type="primary", key="rate")
    if query.strip() and not labels:
        shown = query.strip() if len(query.strip()) <= ECHO_CHARS else query.strip()[:ECHO_CHARS] + "…"
        st.caption(f"No title matches '{shown}'.")


def picks_table(rec: Recommender, history: pd.DataFrame, saved: list[int]) -> None:
    st.subheader(f"Your picks ({len(history)})")
    if "cleared_picks" in st.session_state:
        st.button(f"Undo clear ({len(st.session_state.cleared_picks)} picks)", on_click=on_undo_clear, key="undo_clear")
    if history.empty:
        st.caption("Nothing rated yet: rate a few titles and recommendations appear at once.")
        return
    rows = rec.lookup(history["item_id"][::-1])
    rating = dict(zip(history["item_id"], history["feedback"]))
    shown = pd.DataFrame({"item_id": rows["item_id"], "Title": rows["name"],
                          RATING_COLUMN: rows["item_id"].map(lambda a: option_of(rating[a])),
                          SAVE_COLUMN: rows["item_id"].isin(saved),
                          "Type": rows["type"].fillna(""), "In model": rows["in_model"]})
    feedback_editor(shown, "picks", height=min(WRAPPING_ROW_PX * len(shown) + 38, 360), row_height=WRAPPING_ROW_PX,
                    widths={"Title": 140, RATING_COLUMN: 90, SAVE_COLUMN: 50, "Type": 60, "In model": 70})
    st.button("Clear all picks", on_click=on_clear_all, args=(history,), key="clear_all")


def feedback_editor(shown: pd.DataFrame, name: str, height: int | str = "auto", widths: dict | None = None,
                    row_height: int | None = None) -> None:
    """An st.data_editor whose rating / save cells become events (nostrade.ui.edits_to_events)."""
    st.session_state[f"{name}_shown"] = shown
    widths = widths or {}
    config = {c: st.column_config.Column(c, width=w) for c, w in widths.items()}
    config.update({RATING_COLUMN: st.column_config.SelectboxColumn(RATING_COLUMN, options=RATING_OPTIONS, required=True,
                                                                    width=widths.get(RATING_COLUMN)),
                   SAVE_COLUMN: st.column_config.CheckboxColumn("Save", help=SAVE_COLUMN,
                                                                width=widths.get(SAVE_COLUMN)),
                   "Members": st.column_config.NumberColumn(format="localized"),
                   "Score": st.column_config.NumberColumn(format="%.2f")})
    st.data_editor(
        shown, key=editor_key(name), hide_index=True, height=height, width="stretch", row_height=row_height,
        column_order=[c for c in shown.columns if c != "item_id"],
        disabled=[c for c in shown.columns if c not in (RATING_COLUMN, SAVE_COLUMN)], column_config=config)


def catalogue_browser(rec: Recommender, model_hash: str, history: pd.DataFrame, saved: list[int]) -> None:
    st.subheader("Catalogue")
    search_col, genre_col, type_col = st.columns([2, 2, 1])
    query = search_col.text_input("Search titles", key="catalogue_query", placeholder="typos are fine")
    genres = genre_col.multiselect("Genre", rec.genres, key="catalogue_genres")
    types = type_col.multiselect("Type", rec.types, key="catalogue_types")
    if query.strip():
        rows = cached_search(rec, model_hash, query.strip(), 100)
        allowed = rec.filter_mask(genres, types)
        rows = rows[rows["item_id"].isin(rec.catalogue["item_id"].to_numpy()[allowed])]
    else:
        rows = most_popular(rec, model_hash, tuple(genres), tuple(types))
    rating = dict(zip(history["item_id"], history["feedback"]))
    shown = pd.DataFrame({
        "item_id": rows["item_id"], "Title": rows["name"],
        RATING_COLUMN: rows["item_id"].map(lambda a: option_of(rating.get(a))),
        SAVE_COLUMN: rows["item_id"].isin(saved),
        "Genres": rows["genres"].map(", ".join), "Type": rows["type"].fillna(""),
        "Episodes": rows["episodes"] if "episodes" in rows else pd.NA,
        "Score": rows["rating_mean"] if "rating_mean" in rows else pd.NA,
        "Members": rows["members"],
    }).reset_index(drop=True)
    st.caption(f"{len(shown)} titles" + ("" if query.strip() else f": the {CATALOGUE_ROWS} with the most members")
               + " · set 'Your rating' in the table")
    feedback_editor(shown, "catalogue", height=380, widths={"Title": 240, RATING_COLUMN: 95, SAVE_COLUMN: 50})


def recommendations(rec: Recommender, history: pd.DataFrame, settings: dict):
    """Top-K (cards, table, CSV export), "Why these?" and the influence graph; returns predict's Recommendations."""
    filters = settings["filters"]
    request = (tuple(as_events(history)), settings["k"], settings["alpha"], filters)
    head, button = st.columns([4, 1])
    pressed = button.button("Predict", type="primary", key="predict")
    if pressed or settings["live"] or "request" not in st.session_state:
        st.session_state.request = request
    elif st.session_state.request != request:
        st.info("Your picks or settings changed: press Predict to update.")
    events_, k, alpha, filters = st.session_state.request
    out = rec.recommend(list(events_), k=k, alpha=alpha, **filters.of_recommend())
    heading, note = sections.top_heading(len(out.items), k)
    head.subheader(heading)
    notes = [f"How: {sections.how_computed(out.path, alpha, rec.model.kind)}"]
    if out.content_only_ids:
        notes.append(f"{len(out.content_only_ids)} of your picks are outside the model's vocabulary and count "
                     "through their genres")
    if note:
        notes.append(note)
    st.caption(" · ".join(notes))
    if out.items.empty:
        return out
    if said := sections.dislike_note(rec, history, out.items, k, alpha, filters):
        st.caption(said)
    cards(out.items, rec)
    st.dataframe(recommendation_table(out.items), hide_index=True, width="stretch", row_height=WRAPPING_ROW_PX,
                 column_config={"#": st.column_config.NumberColumn(width=30),  # these three fit the column
                                "Title": st.column_config.TextColumn(width=150),
                                "Why": st.column_config.TextColumn(width=320),
                                "Score": st.column_config.NumberColumn(help="How well it fits, 0 to 1")})
    st.download_button("Export Top-K with explanations (CSV)", out.to_csv(), file_name="nostrade_top_k.csv",
                       mime="text/csv", key="export", on_click="ignore")
    why_these(out, rec)
    return out


def why_these(out, rec: Recommender) -> None:
    st.subheader("Why these?")
    if out.explanations.empty:
        st.caption("None of your Like/Love picks is close enough to these to be named as the reason: each card says "
                   "what did the work instead.")
    else:
        st.caption("For each recommendation, the titles you liked that are most like it (watched by the same people, "
                   "else the same genres); 'Watched both': people in the training data.")
        st.dataframe(explanation_table(out), hide_index=True, width="stretch", row_height=WRAPPING_ROW_PX)
    with st.container(key="influence"):  # left out on phones (PAGE_CSS)
        st.subheader("Influence graph")
        draw_influence(out.graph, rec)


def more_sections(rec: Recommender, history: pd.DataFrame, out) -> set[int]:
    """The rows below the Top-K (nostrade.sections): each obeys the filters; a title appears once per page.
    Returns every item id on the page so far."""
    events_, _, alpha, filters = st.session_state.request
    shown = out.items["item_id"].tolist()
    found = sections.rows(rec, list(events_), history, alpha, filters, shown)
    for row in found:
        st.subheader(row.title)
        st.caption(row.caption)
        cards(row.items, rec)
    return {int(a) for a in shown} | set(history["item_id"].astype(int).tolist()) | \
        {int(a) for row in found for a in row.items["item_id"]}


def browse_by_taste(rec: Recommender, on_page: set[int]) -> None:
    """A row per taste cluster (artifacts/clusters.json, when it exists): its name and a few of its titles not
    rated or shown yet that pass the filters (nostrade.sections.taste_rows), any of which can be rated from here."""
    version = file_version(CLUSTERS)
    if version is None:
        return
    st.subheader("Browse by taste")
    try:
        clusters_ = cached_taste_rows(str(CLUSTERS), rec.dataset.iid_map_hash, version)
    except ValueError as e:
        st.caption(f"No taste rows: {e}")
        return
    rows = sections.taste_rows(rec, clusters_, st.session_state.request[3], on_page)
    st.caption("Groups of titles watched by the same people, each named by the genres most of its titles share.")
    if not rows:
        st.caption("No taste row has titles that pass the filters and are not shown above.")
        return
    labels = {}
    for row in rows:
        st.markdown(f"**{row.title}** · {row.caption}")
        cards(row.items, rec, reasons=False)
        labels.update((a, f"{n} — {row.title}") for a, n in zip(row.items["item_id"].tolist(), row.items["name"]))
    title, rating, add = st.columns([3, 2, 1], vertical_alignment="bottom")
    title.selectbox("A title from these rows", list(labels), format_func=labels.get, key="taste_title", index=None,
                    placeholder="choose a title")
    rating.radio("Your rating", list(FEEDBACK_NAMES.values())[::-1], horizontal=True, key="taste_feedback",
                 index=None)
    add.button("Add to my picks", on_click=on_quick_rate, args=("taste_title", "taste_feedback", None),
               key="taste_add")


def retrain(served: Path) -> None:
    """ "Retrain for everyone": nostrade.finetune on the event log, into FINETUNED if not worse."""
    st.subheader("Retrain")
    st.caption(f"Retrains the shared model on every rating in the event log (everyone's, yours included); everyone "
               f"gets it, and only if it predicts held-out ratings at least as well (written to `{FINETUNED.name}`).")
    if st.button("Retrain for everyone", key="retrain"):
        progress = st.progress(0.0, text="Starting…")
        try:
            report = finetune.finetune(EVENTS_DB, served, DATA_DIR, finetune.FinetuneConfig(progress=False),
                                       out_path=FINETUNED, on_step=lambda f, text: progress.progress(f, text=text))
        except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
            st.session_state.retrain_note = ("error", f"Retraining failed: {e}")
        else:
            st.session_state.retrain_note = retrain_note(report, served)
            if "finetuned_checkpoint" in report:  # the candidate: FINETUNED holds it if accepted, else it is no use
                Path(report["finetuned_checkpoint"]).unlink(missing_ok=True)
        finally:
            use_threads(1)  # training set its own (process-wide) thread count
        st.rerun()
    if note := st.session_state.get("retrain_note"):
        {"success": st.success, "info": st.info, "error": st.error}[note[0]](note[1])


def retrain_note(report: dict, served: Path) -> tuple[str, str]:
    """(kind, sentence) of a fine-tune report, for the page."""
    log = report["log"]
    if "valid_finetuned" not in report:
        return "info", f"Nothing to retrain from: {report['reason']}."
    metric = finetune.METRIC
    before, after = report["valid_previous"][metric], report["valid_finetuned"][metric]
    people = f"{log['log_users']:,} {'person' if log['log_users'] == 1 else 'people'}"
    said = (f"Retrained on {log['log_interactions_added']:,} logged ratings of {people} in {report['seconds']:.1f} s: "
            f"validation {metric.upper()} {before:.4f} → {after:.4f}")
    if report["accepted"]:
        return "success", f"{said}, not worse: now serving `{FINETUNED.name}`."
    return "info", f"{said}, worse: still serving `{served.name}`."


def main() -> None:
    started = time.perf_counter()
    st.set_page_config(page_title="Nostrade Engine", page_icon="🎬", layout="wide")
    st.html(PAGE_CSS)
    st.title("Nostrade Engine")
    st.caption("Rate anime you know — Dislike, Like or Love — and the recommendations follow at once, each with "
               "the reason it is there. One title is enough to start.")
    checkpoint = served_checkpoint()
    version = file_version(checkpoint)
    if version is None or not (DATA_DIR / "meta.json").exists():
        missing = checkpoint if version is None else DATA_DIR / "meta.json"
        no_model_page(f"No trained model yet: `{missing}` is missing.")
        return
    try:
        rec, model_hash = load_recommender(str(checkpoint), str(DATA_DIR), str(CATALOGUE) if CATALOGUE else None,
                                           version)
    except (ValueError, OSError, RuntimeError, KeyError) as e:
        no_model_page(f"The model at `{checkpoint}` cannot be used with `{DATA_DIR}`: {e}")
        return

    user_id = current_user()
    apply_table_edits()
    settings = sidebar(rec)
    developer_details(rec, checkpoint, model_hash)
    if flash := st.session_state.pop("flash", None):
        st.error(flash)
    try:
        log = event_log(str(EVENTS_DB))
        history, saved = UserHistories(rec.dataset, log).frame(user_id), current_saved(log.events(user_id))
    except (sqlite3.Error, OSError, RuntimeError) as e:
        st.error(f"The event log `{EVENTS_DB}` cannot be read: {e}")
        history, saved = pd.DataFrame(columns=HISTORY_COLUMNS), []
    left, right = st.columns([4, 7], gap="large")
    with left:
        onboarding(rec, model_hash)
        picks_table(rec, history, saved)
        retrain(checkpoint)
    with right:
        out = recommendations(rec, history, settings)
    on_page = more_sections(rec, history, out)
    browse_by_taste(rec, on_page)
    catalogue_browser(rec, model_hash, history, saved)
    if saved:
        st.subheader("Saved for later")
        st.write(", ".join(rec.lookup(saved)["name"]))
    st.session_state.runs = st.session_state.get("runs", 0) + 1  # the browser test waits for this to change
    st.sidebar.caption(f"Page computed in {1000 * (time.perf_counter() - started):.0f} ms · run {st.session_state.runs}")


main()
