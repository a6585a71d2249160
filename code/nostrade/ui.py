"""Pure helpers of the Streamlit demo (code/app.py): table edits -> feedback events, cards, influence graph.

Kept out of app.py so that they can be tested without Streamlit: AppTest cannot type into an
``st.data_editor``, so the step from the editor's ``edited_rows`` to events is tested here.
"""
from __future__ import annotations

import colorsys
import hashlib
import html
import io
import textwrap
from dataclasses import dataclass

import networkx as nx
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from nostrade.events import CLEARED, SAVED, UNSAVED
from nostrade.sequences import FEEDBACK_NAMES

NO_RATING = "—"
RATING_OPTIONS = [NO_RATING, *FEEDBACK_NAMES.values()]  # the drop-down: — / Dislike / Like / Love
CODE_OF_OPTION = {NO_RATING: CLEARED, **{name: code for code, name in FEEDBACK_NAMES.items()}}
RATING_COLUMN, SAVE_COLUMN = "Your rating", "Save for later"
# The title drop-down's options at the width their text needs (up to the screen's), wrapped rather than cut
# short: "Fullmetal Alchemist: Brotherhood" and "... Brotherhood Specials" must not look the same. Cards: five a row,
# two on a phone (<= PHONE_PX), titles wrapped, never cut. On a phone nothing may scroll sideways (the page's
# content is clipped to the screen, a wide table scrolls inside its own box) and the influence graph, unreadable
# at that width, is left out (its links are in the "Why these?" table).
PHONE_PX = 640
PAGE_CSS = f"""<style>
div:has(> [role="listbox"]) {{ width: max-content !important; min-width: var(--trigger-width);
  max-width: calc(100vw - 32px) !important; }}
[role="listbox"] [role="option"], [role="listbox"] [role="option"] > div {{ white-space: normal !important;
  overflow: visible !important; text-overflow: clip !important; height: auto !important; }}
.nostrade-cards {{ display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }}
.nostrade-card {{ flex: 1 1 0; min-width: 0; overflow-wrap: anywhere; }}
@media (max-width: {PHONE_PX}px) {{
  .nostrade-card {{ flex: 0 0 calc(50% - 6px); }}
  [data-testid="stAppViewContainer"], [data-testid="stMain"] {{ overflow-x: clip; }}
  .st-key-influence {{ display: none; }}
}}
</style>"""


@dataclass(frozen=True)
class FeedbackEvent:
    item_id: int
    feedback_type: int  # nostrade.events codes: 0 cleared, 1-3 Dislike/Like/Love, 4 saved, 5 unsaved


def option_of(feedback: int | None) -> str:
    """Drop-down label of a current rating (None or 0: no rating)."""
    return FEEDBACK_NAMES.get(int(feedback), NO_RATING) if feedback is not None else NO_RATING


def edits_to_events(shown: pd.DataFrame, edited_rows: dict) -> list[FeedbackEvent]:
    """Events for the cells a person changed in the catalogue editor.

    ``shown`` is the frame the editor displayed (positional rows; columns ``item_id``, RATING_COLUMN,
    SAVE_COLUMN); ``edited_rows`` is Streamlit's edit state ``{row position: {column: new value}}``.
    A cell set back to the value it showed yields nothing; other columns are ignored.
    """
    events = []
    for position in sorted(edited_rows, key=int):
        row = int(position)
        if not 0 <= row < len(shown):
            raise ValueError(f"edited row {row} is outside the {len(shown)} rows shown")
        item_id = int(shown["item_id"].iloc[row])
        changes = edited_rows[position]
        if RATING_COLUMN in changes:
            new = changes[RATING_COLUMN] if changes[RATING_COLUMN] is not None else NO_RATING
            if new not in CODE_OF_OPTION:
                raise ValueError(f"edited row {row}: rating {new!r} is not one of {RATING_OPTIONS}")
            if new != shown[RATING_COLUMN].iloc[row]:
                events.append(FeedbackEvent(item_id, CODE_OF_OPTION[new]))
        if SAVE_COLUMN in changes:
            new = bool(changes[SAVE_COLUMN])
            if new != bool(shown[SAVE_COLUMN].iloc[row]):
                events.append(FeedbackEvent(item_id, SAVED if new else UNSAVED))
    return events


# -- placeholder posters -------------------------------------------------------------------------
GENRE_COLOURS = {
    "Action": "#d64545", "Adventure": "#e0822d", "Comedy": "#e6b422", "Drama": "#7b4fa8",
    "Romance": "#e0569b", "Sci-Fi": "#2f7fd1", "Fantasy": "#3a9d5d", "Slice of Life": "#5fb3a3",
    "Mystery": "#4a4f8c", "Horror": "#3b3b3b", "Psychological": "#6b3f5f", "Sports": "#2aa6c9",
    "Music": "#c257c9", "Mecha": "#6d7f8c", "Supernatural": "#5a56c9", "Shounen": "#cf5f2f",
    "Kids": "#7ccf4a",
}


def genre_colour(genre: str | None) -> str:
    """A fixed colour per genre (a stable hash picks one for genres without their own)."""
    if not genre:
        return "#808890"
    if genre in GENRE_COLOURS:
        return GENRE_COLOURS[genre]
    hue = int(hashlib.sha256(genre.encode()).hexdigest()[:6], 16) % 360 / 360
    return "#" + "".join(f"{round(255 * c):02x}" for c in colorsys.hls_to_rgb(hue, 0.45, 0.45))  # CSS and matplotlib


def poster_card_html(title: str, genres, type_: str | None = None, reason: str | None = None,
                     poster_url: str | None = None, badge: str | None = None) -> str:
    """An HTML card: the poster when the catalogue has one, else a placeholder in the main genre's colour; ``badge``:
    a short label under the title (e.g. a title the model scored from its features alone). Text wraps, never cut
    (the whole title is also the card's tooltip); an unknown type (None, NaN) is left out, never shown as "nan"."""
    genres = list(genres) if genres is not None else []
    colour = genre_colour(genres[0] if genres else None)
    esc = html.escape
    if poster_url:
        art = f'<img src="{esc(poster_url)}" alt="" style="width:100%;height:120px;object-fit:cover;border-radius:6px">'
    else:
        art = (f'<div style="min-height:120px;border-radius:6px;background:linear-gradient(135deg,{colour},#1e1e28);'
               f'display:flex;align-items:flex-end;padding:6px;color:#fff;font-weight:600;font-size:0.85rem">'
               f'{esc(title)}</div>')
    known_type = type_ if isinstance(type_, str) and type_.strip() and type_.strip().lower() != "nan" else None
    meta = " · ".join(esc(x) for x in (known_type, ", ".join(genres[:3])) if x)
    lines = [f'<div class="nostrade-title" style="font-weight:600;font-size:0.9rem;margin-top:4px">{esc(title)}</div>',
             f'<div class="nostrade-meta" style="font-size:0.75rem;opacity:0.75">{meta}</div>']
    if badge:
        lines.append(f'<div class="nostrade-badge" style="display:inline-block;font-size:0.7rem;padding:0 6px;'
                     f'border-radius:8px;background:#2f7fd1;color:#fff">{esc(badge)}</div>')
    if reason:
        lines.append(f'<div class="nostrade-reason" style="font-size:0.75rem;font-style:italic">{esc(reason)}</div>')
    return (f'<div class="nostrade-card" title="{esc(title)}" style="border-left:4px solid {colour};'
            f'padding-left:6px">{art}{"".join(lines)}</div>')


def card_row_html(cards: list[str]) -> str:
    """Cards side by side in one HTML block (one page element per row, not one per card; PAGE_CSS lays them out)."""
    return f'<div class="nostrade-cards">{"".join(cards)}</div>'


# -- influence graph -------------------------------------------------------------------------------
FEEDBACK_COLOURS = {"Love": "#e0569b", "Like": "#3a9d5d", "Dislike": "#808890"}


LABEL_WIDTH = 30  # characters per line of a node's label: long titles wrap onto more lines, never cut


def influence_png(graph: nx.DiGraph, genres_of: dict | None = None) -> bytes:
    """PNG of predict's influence graph: your picks (left, coloured by your rating) -> recommendations
    (right, coloured by main genre, in rank order), line width = similarity. Titles are written in
    full (wrapped); the image is cropped to what is drawn, so no label is clipped.

    Plain matplotlib Figure (no pyplot state, so concurrent sessions cannot mix their drawings), kept
    to a few primitives: a page update costs ~0.1 s here, not a graph-layout engine in the browser."""
    genres_of = genres_of or {}
    linked = [n for n in graph.nodes if graph.degree(n) > 0]
    picks = [n for n in linked if graph.nodes[n]["kind"] == "pick"]
    recs = sorted((n for n in linked if graph.nodes[n]["kind"] != "pick"), key=lambda n: graph.nodes[n].get("rank", 0))
    rows = max(len(picks), len(recs), 1)
    y_of = {n: 1 - (i + 0.5) / len(picks) for i, n in enumerate(picks)}
    y_of.update({n: 1 - (i + 0.5) / len(recs) for i, n in enumerate(recs)})
    x_of = {**{n: 0.0 for n in picks}, **{n: 1.0 for n in recs}}

    figure = Figure(figsize=(4, 0.4 + 0.5 * rows), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    edges = [(u, v, w) for u, v, w in graph.edges(data="weight") if u in x_of and v in x_of]
    ax.add_collection(LineCollection([((x_of[u], y_of[u]), (x_of[v], y_of[v])) for u, v, _ in edges],
                                     linewidths=[0.5 + 4 * max(float(w), 0.0) for _, _, w in edges],
                                     colors="#8a8aa0", alpha=0.6))
    colours = [FEEDBACK_COLOURS.get(graph.nodes[n].get("feedback"), "#808890") for n in picks] + \
              [genre_colour(next(iter(genres_of.get(n, [])), None)) for n in recs]
    ax.scatter([x_of[n] for n in picks + recs], [y_of[n] for n in picks + recs], s=110, c=colours, zorder=3)
    for n in picks:
        ax.text(-0.05, y_of[n], label(f"{graph.nodes[n]['name']} ({graph.nodes[n].get('feedback', '')})"),
                ha="right", va="center", fontsize=11)
    for n in recs:
        ax.text(1.05, y_of[n], label(f"#{graph.nodes[n].get('rank', '')} {graph.nodes[n]['name']}"),
                ha="left", va="center", fontsize=11)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(0, 1)
    ax.axis("off")
    out = io.BytesIO()
    figure.savefig(out, format="png", bbox_inches="tight", pad_inches=0.1)
    return out.getvalue()


def label(text: str) -> str:
    """A node's label in full, wrapped at LABEL_WIDTH characters."""
    return textwrap.fill(text, LABEL_WIDTH, break_long_words=False)
