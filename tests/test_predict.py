"""The serving backend: validation, blending, filters, dislikes, cold start, explanations, search, loading."""
from __future__ import annotations

import io
import json
import shutil

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

import predict
from nostrade.checkpoint import CheckpointMismatch, save_checkpoint
from nostrade.dataset import load_dataset
from nostrade.sasrec_net import SASRec, SASRecConfig
from nostrade.prep import period_start
from nostrade.sequences import DISLIKE, LIKE, LOVE
from nostrade.sources import load_anime_catalogue
from predict import Event, Recommender

CATALOGUE = predict.REPO_ROOT / "data" / "sample" / "anime.csv.gz"
NARUTO, ONE_PIECE, BLEACH, DEATH_NOTE = 20, 21, 269, 1535


def small_model(n_items: int, n_time_bins: int = 1, max_len: int = 20, seed: int = 0) -> SASRec:
    torch.manual_seed(seed)
    model = SASRec(SASRecConfig(n_items=n_items, n_time_bins=n_time_bins, max_len=max_len, d_model=16, n_heads=2,
                                n_layers=1, dropout=0.0))
    with torch.no_grad():  # spread the random embeddings so that similarities are not all ~0
        model.item_emb.weight.normal_(0, 1)
        model.item_emb.weight[0].zero_()
    return model.eval()


@pytest.fixture(scope="module")
def anime(processed_anime):
    return load_dataset(processed_anime)


@pytest.fixture(scope="module")
def catalogue():
    return load_anime_catalogue(CATALOGUE)


@pytest.fixture(scope="module")
def rec(anime, catalogue) -> Recommender:
    """The real embedded sample's vocabulary and the full 12,294-title catalogue, a random small SASRec."""
    return Recommender(small_model(anime.n_items), anime, catalogue)


def vocab_ids(rec: Recommender, n: int, seed: int = 0) -> list[int]:
    ids = rec.dataset.items["item_id"].to_numpy()
    return np.random.default_rng(seed).choice(ids, n, replace=False).tolist()


def content_only_ids(rec: Recommender, n: int) -> list[int]:
    return rec.catalogue["item_id"][~rec.catalogue["item_id"].isin(rec.dataset.items["item_id"])].head(n).tolist()


def ranks(final: np.ndarray) -> np.ndarray:
    """1-based rank of every column of a (C,) score vector (higher score = better rank)."""
    order = np.argsort(-final, kind="stable")
    out = np.empty(len(order), dtype=np.int64)
    out[order] = np.arange(1, len(order) + 1)
    return out


# ----------------------------------------------------------------------------------------------------- input

@pytest.mark.parametrize("value, code", [(1, DISLIKE), (2, LIKE), (3, LOVE), ("Love", LOVE), ("dislike", DISLIKE),
                                         (" LIKE ", LIKE), (np.int64(3), LOVE)])
def test_feedback_codes_and_names(value, code):
    assert predict.feedback_code(value) == code


@pytest.mark.parametrize("value", [0, 4, -1, "meh", "", True, 2.0, None, "3"])
def test_bad_feedback_is_a_clear_value_error(rec, value):
    with pytest.raises(ValueError, match=r"event 1 feedback: .* is not one of 1 \(Dislike\), 2 \(Like\), 3 \(Love\)"):
        rec.recommend([Event(NARUTO, "Love"), Event(ONE_PIECE, value)])


@pytest.mark.parametrize("event", [("20", 2), (20.0, 2), (True, 2), (None, 2), {"feedback": 2}, (20, 2, 3, 4),
                                   (20, 2, float("nan")), (20, 2, "yesterday")])
def test_bad_events_raise(rec, event):
    with pytest.raises(ValueError, match="event 0"):
        rec.recommend([event])


@pytest.mark.parametrize("k", [0, -3, predict.MAX_K + 1, 2.5, True, "10"])
def test_bad_k(rec, k):
    with pytest.raises(ValueError, match=r"k: .* is not an integer in 1\.\.500"):
        rec.recommend([Event(NARUTO, 3)], k=k)


@pytest.mark.parametrize("alpha", [-0.01, 1.5, float("nan"), "0.2"])
def test_bad_alpha(rec, alpha):
    with pytest.raises(ValueError, match=r"alpha: .* is not a number in \[0, 1\]"):
        rec.recommend([Event(NARUTO, 3)], alpha=alpha)


def test_alpha_defaults_to_the_setting_chosen_on_validation(rec):
    assert rec.recommend([Event(NARUTO, 3)]).alpha == rec.default_alpha
    chosen = Recommender(rec.model, rec.dataset, rec.catalogue, alpha=0.3, dislike_weight=0.0)
    out = chosen.recommend([Event(NARUTO, 3)])
    assert out.alpha == 0.3 and chosen.describe()["alpha"] == 0.3 and chosen.scoring.dislike_weight == 0.0
    same = chosen.recommend([Event(NARUTO, 3)], alpha=0.3)
    assert out.items["item_id"].tolist() == same.items["item_id"].tolist()


def test_bad_filters(rec):
    with pytest.raises(ValueError, match="genres: \\['Cooking'\\] not in"):
        rec.recommend([], genres=["Action", "Cooking"])
    with pytest.raises(ValueError, match="types: \\['Manga'\\] not in"):
        rec.recommend([], types=["Manga"])
    with pytest.raises(ValueError, match="min_members: -1"):
        rec.recommend([], min_members=-1)


def test_event_forms_are_equivalent(rec):
    as_events = rec.recommend([Event(NARUTO, "Love"), Event(BLEACH, LIKE), Event(DEATH_NOTE, 3)], k=10)
    as_tuples = rec.recommend([(NARUTO, 3), (BLEACH,), (DEATH_NOTE, "love", None)], k=10)
    as_dicts = rec.recommend([{"item_id": NARUTO, "feedback": "Love"}, {"item_id": BLEACH},
                              {"item_id": DEATH_NOTE, "feedback": 3, "timestamp": None}], k=10)
    for other in (as_tuples, as_dicts):
        pd.testing.assert_frame_equal(as_events.items, other.items)


def test_unknown_ids_are_skipped_and_listed(rec):
    out = rec.recommend([Event(NARUTO, 3), Event(99_999_999, 2), Event(-5, 1), Event(BLEACH, 2)], k=10)
    assert out.unknown_ids == [99_999_999, -5]
    clean = rec.recommend([Event(NARUTO, 3), Event(BLEACH, 2)], k=10)
    pd.testing.assert_frame_equal(out.items, clean.items)


def test_duplicates_latest_wins(rec):
    a, b, c = vocab_ids(rec, 3, seed=1)
    out = rec.recommend([Event(a, "Love"), Event(b, "Like"), Event(c, "Like"), Event(a, "Dislike")], k=15)
    same = rec.recommend([Event(b, "Like"), Event(c, "Like"), Event(a, "Dislike")], k=15)
    assert out.n_duplicates == 1
    pd.testing.assert_frame_equal(out.items, same.items)
    h = rec.history([Event(a, 3), Event(b, 2), Event(a, 1)])
    assert h.feedback.tolist() == [LIKE, DISLIKE] and rec.catalogue["item_id"].to_numpy()[h.rows].tolist() == [b, a]


def test_timestamps_order_the_events(rec):
    a, b, c = vocab_ids(rec, 3, seed=2)
    shuffled = [Event(c, 3, 300), Event(a, 2, 100), Event(b, 1, 200)]
    ordered = [Event(a, 2, 100), Event(b, 1, 200), Event(c, 3, 300)]
    pd.testing.assert_frame_equal(rec.recommend(shuffled).items, rec.recommend(ordered).items)
    # a duplicate's "latest" is the latest by timestamp, not by list position
    assert rec.history([Event(a, 3, 500), Event(a, 1, 100)]).feedback.tolist() == [LOVE]


def test_history_longer_than_max_len_uses_the_most_recent_part(rec):
    ids = vocab_ids(rec, rec.max_len + 7, seed=3)
    events = [Event(a, 2 + i % 2) for i, a in enumerate(ids)]
    out = rec.recommend(events, k=30)
    assert out.n_truncated == 7 and rec.history(events).n_truncated == 7
    np.testing.assert_allclose(rec.scores([events]).raw_model, rec.scores([events[7:]]).raw_model, rtol=1e-5)
    assert not set(out.items["item_id"]) & set(ids)  # the truncated events still count as seen


# -------------------------------------------------------------------------------------------------- scoring

def test_top_k_rows_and_vectors_best_first():
    scores = np.array([[0.5, 2.0, -np.inf, 2.0, 1.0], [3.0, 1.0, 2.0, 0.0, 4.0]], dtype=np.float32)
    np.testing.assert_array_equal(predict.top_k(scores, 3), [[1, 3, 4], [4, 0, 2]])  # equal scores: position order
    np.testing.assert_array_equal(predict.top_k(scores[0], 9), [1, 3, 4, 0, 2])  # k capped at the length
    assert predict.top_k(scores[1], 0).shape == (0,)
    rng = np.random.default_rng(0)
    many = rng.normal(size=(4, 1000))
    np.testing.assert_array_equal(predict.top_k(many, 25), np.argsort(-many, axis=1)[:, :25])


def test_never_recommends_what_was_seen(rec):
    events = [Event(a, 1 + i % 3) for i, a in enumerate(vocab_ids(rec, 15, seed=4) + content_only_ids(rec, 3))]
    out = rec.recommend(events, k=100)
    assert len(out.items) == 100
    assert not set(out.items["item_id"]) & {e.item_id for e in events}
    assert out.items["rank"].tolist() == list(range(1, 101))
    assert (np.diff(out.items["score"].to_numpy()) <= 1e-6).all()


def test_titles_outside_the_vocabulary_count_through_genres(rec, catalogue):
    outside = content_only_ids(rec, 2)
    events = [Event(a, 3) for a in vocab_ids(rec, 3, seed=5)]
    out = rec.recommend(events + [Event(a, 3) for a in outside], k=20)
    assert out.content_only_ids == outside and out.path == "sequence+genre"
    with_outside = rec.scores([events + [Event(a, 3) for a in outside]]).genre[0]
    without = rec.scores([events]).genre[0]
    assert not np.allclose(with_outside, without)
    # with alpha = 1 the whole catalogue competes on genres, titles the model does not know included
    genre_only = rec.recommend(events, k=200, alpha=1.0).items
    assert (~genre_only["in_model"]).any() and not genre_only["from_features"].any()
    assert genre_only["model_score"][~genre_only["in_model"]].isna().all()


@pytest.fixture(scope="module")
def featured(anime, catalogue) -> Recommender:
    """A random small SASRec with item features: it scores all 12,294 catalogue titles."""
    from nostrade.sasrec_training import with_item_features
    cfg = with_item_features(SASRecConfig(n_items=anime.n_items, max_len=20, d_model=16, n_heads=2, n_layers=1,
                                          dropout=0.0, use_item_features=True), anime)
    torch.manual_seed(0)
    model = SASRec(cfg)
    model.set_titles(anime.items, np.ones(anime.n_items + 1, dtype=bool))
    with torch.no_grad():
        model.field_emb.weight.normal_(0, 1)
    return Recommender(model.eval(), anime, catalogue)


def test_a_features_model_scores_every_catalogue_title(featured):
    events = [Event(a, 3) for a in vocab_ids(featured, 6, seed=4)]
    s = featured.scores([events], alpha=0.0)
    assert len(featured.catalogue) == 12_294 and np.isfinite(s.raw_model[0]).all()
    items = featured.recommend(events, k=500, alpha=0.0).items
    outside = items[~items["in_model"]]
    assert len(outside) and outside["from_features"].all() and not items["from_features"][items["in_model"]].any()
    assert outside["model_score"].notna().all() and (outside["source"] == "sequence").all()
    raw = s.raw_model[0]
    expected = np.argsort(-np.where(s.candidates[0], raw, -np.inf), kind="stable")[:100]  # (float32 ties further down)
    assert items["item_id"][:100].tolist() == featured.catalogue["item_id"].to_numpy()[expected].tolist()
    assert featured.recommend(events, k=5).to_dict()["items"][0]["from_features"] in (True, False)


def test_alpha_zero_ranks_by_the_model_and_one_by_genre(rec):
    events = [Event(a, 2) for a in vocab_ids(rec, 8, seed=6)]
    s = rec.scores([events], alpha=0.0)
    by_model = rec.recommend(events, k=30, alpha=0.0).items
    raw = s.raw_model[0]
    expected = np.argsort(-np.where(s.candidates[0] & ~np.isnan(raw), raw, -np.inf), kind="stable")[:30]
    assert by_model["item_id"].tolist() == rec.catalogue["item_id"].to_numpy()[expected].tolist()
    by_genre = rec.recommend(events, k=30, alpha=1.0).items
    assert np.allclose(by_genre["score"], by_genre["genre_score"] - by_genre["dislike_penalty"])
    assert (np.diff(by_genre["genre_score"].to_numpy()) <= 1e-6).all()


def test_blend_formula_on_normalised_scores(rec):
    events = [Event(a, 3) for a in vocab_ids(rec, 6, seed=7)]
    items = rec.recommend(events, k=50, alpha=0.3).items
    inside = items[items["in_model"]]
    assert np.allclose(inside["score"], 0.7 * inside["model_score"] + 0.3 * inside["genre_score"], atol=1e-6)
    assert items["model_score"].dropna().between(0, 1).all() and items["genre_score"].between(0, 1).all()


def test_filters_apply_before_top_k_and_keep_the_order(rec):
    events = [Event(a, 3) for a in vocab_ids(rec, 10, seed=8)]
    filtered = rec.recommend(events, k=25, genres=["Comedy", "Romance"], types=["TV"], min_members=20_000).items
    assert len(filtered) == 25
    assert filtered["genres"].map(lambda g: bool({"Comedy", "Romance"} & set(g))).all()
    assert (filtered["type"] == "TV").all() and (filtered["members"] >= 20_000).all()
    everything = rec.recommend(events, k=500).items
    kept = everything[everything["item_id"].isin(filtered["item_id"])]
    assert kept["item_id"].tolist() == filtered["item_id"].tolist()[:len(kept)]
    assert rec.recommend(events, k=10, genres="Cars", types="Music").items["genres"].map(lambda g: "Cars" in g).all()


def test_dislikes_steer_away(anime, catalogue):
    """A disliked title and its nearest neighbours rank lower than when the title is left out, with a dislike
    penalty strong enough to dominate a random model (the served default, 0.05, is set by what it costs on
    ML-100K: README)."""
    rec = Recommender(small_model(anime.n_items), anime, catalogue, dislike_weight=0.5)
    fell, neighbours_fell, cases = 0, 0, 0
    for seed in range(10):
        ids = vocab_ids(rec, 9, seed=100 + seed)
        base, disliked = [Event(a, 3) for a in ids[:8]], ids[8]
        without = rec.scores([base]).final[0]
        with_dislike = rec.scores([base + [Event(disliked, "Dislike")]]).final[0]
        row = int(rec.rows_of(np.array([disliked]))[0])
        iid = rec.iid_of_row[row]
        closeness = rec._item_unit[1:] @ rec._item_unit[iid]
        neighbours = rec.row_of_iid[1 + np.argsort(-closeness, kind="stable")[1:6]]
        before, after = ranks(without), ranks(with_dislike)
        cases += 1
        fell += after[row] > before[row]
        neighbours_fell += after[neighbours].mean() > before[neighbours].mean()
    assert fell == cases and neighbours_fell == cases


def test_dislike_penalty_is_the_closest_dislike_in_a_batch_of_mixed_histories(rec):
    """penalty = weight · max(0, highest embedding cosine to one of the user's own dislikes), per user, in one batch
    where users have 0, 1, 3 and 7 dislikes."""
    ids = vocab_ids(rec, 40, seed=21)
    histories = [[Event(a, 3) for a in ids[:5]],
                 [Event(a, 2) for a in ids[5:10]] + [Event(ids[10], 1)],
                 [Event(a, 1 + (i % 2) * 2) for i, a in enumerate(ids[11:17])],
                 [Event(a, 1) for a in ids[17:24]] + [Event(a, 3) for a in ids[24:27]]]
    s = rec.scores(histories)
    unit = rec._item_unit
    for user, events in enumerate(histories):
        disliked_ids = np.array([e.item_id for e in events if e.feedback == 1], dtype=np.int64)
        disliked = rec.iid_of_row[rec.rows_of(disliked_ids)]
        closest = (unit[1:] @ unit[disliked].T).max(axis=1) if len(disliked) else np.zeros(rec.n_items)
        expected = rec.dislike_weight * np.maximum(closest, 0.0)
        np.testing.assert_allclose(s.penalty[user, :rec.n_items], expected, atol=1e-6)
        assert (s.penalty[user, rec.n_items:] == 0).all()
    assert [len([e for e in h if e.feedback == 1]) for h in histories] == [0, 1, 3, 7]


def test_dislike_only_history_pushes_its_genres_down(rec):
    out = rec.scores([[Event(NARUTO, "Dislike"), Event(BLEACH, "Dislike")]])
    genre = out.genre[0]
    shounen = rec.catalogue["genres"].map(lambda g: "Shounen" in g).to_numpy()
    assert genre[shounen].mean() < genre[~shounen].mean()


# ------------------------------------------------------------------------------------------------ cold start

def test_cold_start_empty_history_is_popularity(rec):
    out = rec.recommend([], k=10)
    assert out.path == "popularity" and out.cold_start
    top = rec.catalogue.sort_values("members", ascending=False).head(10)
    assert out.items["item_id"].tolist() == top["item_id"].tolist()
    assert (out.items["source"] == "popularity").all() and out.items["reason"].str.startswith("Popular").all()
    pd.testing.assert_frame_equal(rec.popular(k=10), out.items)


def test_one_title_the_model_knows_is_scored_by_the_model(rec):
    out = rec.recommend([Event(NARUTO, "Love")], k=10)
    assert out.path == "sequence+genre" and not out.cold_start
    assert out.items["model_score"].notna().all()


def test_cold_start_only_unknown_titles(rec):
    out = rec.recommend([Event(99_999_998, 3)], k=5)
    assert out.path == "popularity" and out.unknown_ids == [99_999_998]
    only_outside = rec.recommend([Event(a, 3) for a in content_only_ids(rec, 4)], k=5)
    assert only_outside.path == "genre+popularity"


def test_cold_start_with_filters(rec):
    items = rec.popular(k=5, genres=["Sports"])
    assert len(items) == 5 and items["genres"].map(lambda g: "Sports" in g).all()


# ---------------------------------------------------------------------------------------------- explanations

def test_explanations_name_the_most_similar_liked_pick(rec):
    picks = vocab_ids(rec, 12, seed=9)
    events = [Event(a, LOVE if i % 2 else LIKE) for i, a in enumerate(picks)] + [Event(NARUTO, "Dislike")]
    out = rec.recommend(events, k=20, alpha=0.2)
    e = out.explanations
    assert len(e) and set(e["pick_item_id"]) <= set(picks)  # the disliked title is never a reason
    unit = rec._item_unit
    iid = dict(zip(rec.catalogue["item_id"], rec.iid_of_row))
    for item_id, group in e.groupby("item_id", sort=False):
        item = out.items.set_index("item_id").loc[item_id]
        if item["source"] != "sequence":
            continue
        sims = {p: float(unit[iid[item_id]] @ unit[iid[p]]) for p in picks}
        assert group["pick_item_id"].iloc[0] == max(sims, key=sims.get)
        assert np.allclose(group["similarity"], [sims[p] for p in group["pick_item_id"]], atol=1e-5)
        assert (np.diff(group["similarity"].to_numpy()) <= 1e-6).all()
        first = group.iloc[0]
        verb = "loved" if first["pick_feedback"] == "Love" else "liked"
        assert item["reason"].startswith(f"Because you {verb} {first['pick_name']}")


def test_co_watch_counts_match_the_training_data(rec, anime):
    events = [Event(a, 3) for a in vocab_ids(rec, 10, seed=10)]
    e = rec.recommend(events, k=20).explanations
    seqs = anime.sequences
    users = seqs.row_of_event()
    to_iid = dict(zip(anime.items["item_id"], anime.items["iid"]))
    watchers = lambda i: set(users[seqs.iid == i])
    lovers = lambda i: set(users[(seqs.iid == i) & (seqs.feedback == LOVE)])
    for row in e.itertuples():
        rec_iid, pick_iid = to_iid[row.item_id], to_iid[row.pick_item_id]
        assert row.co_watched == len(watchers(rec_iid) & watchers(pick_iid))
        assert row.co_loved == len(watchers(rec_iid) & lovers(pick_iid))
    assert (e["co_watched"] > 0).any()


def test_shared_genres_and_human_sentence(rec):
    out = rec.recommend([Event(NARUTO, "Love"), Event(ONE_PIECE, "Love"), Event(BLEACH, "Like")], k=10, alpha=1.0)
    for row in out.explanations.itertuples():
        rec_genres = set(rec.lookup([row.item_id])["genres"][0])
        pick_genres = set(rec.lookup([row.pick_item_id])["genres"][0])
        assert set(row.shared_genres) == rec_genres & pick_genres and row.shared_genres
    assert out.items["reason"].str.match(r"^Shares .+ with .+, which you (loved|liked)").all()  # named by genres alone


def test_influence_graph(rec):
    out = rec.recommend([Event(a, 3) for a in vocab_ids(rec, 10, seed=11)], k=15)
    g = out.graph
    assert isinstance(g, nx.DiGraph)
    assert len(g.edges) == len(out.explanations)
    for row in out.explanations.itertuples():
        data = g.edges[row.pick_item_id, row.item_id]
        expected = row.similarity if not np.isnan(row.similarity) else row.genre_similarity
        assert data["weight"] == pytest.approx(expected)
        assert g.nodes[row.pick_item_id]["kind"] == "pick"
    assert {n for n, d in g.nodes(data=True) if d["kind"] == "recommendation"} == set(out.items["item_id"])


def test_explain_false_skips_explanations(rec):
    out = rec.recommend([Event(a, 3) for a in vocab_ids(rec, 5, seed=12)], k=5, explain=False)
    assert len(out.explanations) == 0 and (out.items["reason"] == "").all() and len(out.items) == 5


# ------------------------------------------------------------------------------------------------ exports

def test_to_csv_atomic_file_and_buffer(rec, tmp_path):
    out = rec.recommend([Event(NARUTO, 3), Event(ONE_PIECE, 3), Event(BLEACH, 2)], k=12)
    path = tmp_path / "top.csv"
    assert out.to_csv(path) is None
    table = pd.read_csv(path)
    assert len(table) == 12 and {"item_id", "name", "score", "reason", "because", "path"} <= set(table.columns)
    assert [p.name for p in tmp_path.iterdir()] == ["top.csv"]  # no temporary file left behind
    buffer = io.StringIO()
    out.to_csv(buffer)
    assert buffer.getvalue() == path.read_text()


def test_to_dict_is_json(rec):
    out = rec.recommend([Event(NARUTO, 3), Event(a := content_only_ids(rec, 1)[0], 3), Event(BLEACH, 2),
                         Event(12345678, 2)], k=8)
    d = json.loads(json.dumps(out.to_dict(), allow_nan=False))
    assert d["path"] == out.path and d["unknown_ids"] == [12345678] and d["content_only_ids"] == [a]
    assert [i["item_id"] for i in d["items"]] == out.items["item_id"].tolist()
    for item in d["items"]:
        named = out.explanations[out.explanations["item_id"] == item["item_id"]]
        assert [x["pick_item_id"] for x in item["explanations"]] == named["pick_item_id"].tolist()


def test_a_ranker_checkpoint_is_served_and_its_picks_name_the_generators_that_found_them(ranker_checkpoint,
                                                                                        processed_anime):
    rec = Recommender.load(ranker_checkpoint, processed_anime, catalogue_path=CATALOGUE)
    events = [Event(NARUTO, 3), Event(DEATH_NOTE, 3), Event(ONE_PIECE, 2), Event(BLEACH, 1)]
    out = rec.recommend(events, k=10)
    assert rec.describe()["model"]["kind"] == "ranker" and "sha256" in rec.describe()["model"]["booster"]
    assert out.path == "sequence+genre" and len(out.items) == 10
    said = {"from people like you", "similar genres", "popular"}  # item-kNN and EASE, content, popularity
    for row in out.items.itertuples():
        assert row.retrieved_by and set(row.retrieved_by) <= said
        assert " · " + " + ".join(row.retrieved_by).capitalize() in row.reason
    retrieved = rec.scores([events]).retrieved[0]
    assert (retrieved[rec.rows_of(out.items["item_id"].to_numpy())] > 0).all()
    assert not retrieved[rec.n_items:].any()  # titles outside the vocabulary: no generator knows them
    assert [i["retrieved_by"] for i in out.to_dict()["items"]] == out.items["retrieved_by"].tolist()
    exported = pd.read_csv(io.StringIO(out.to_csv()))
    assert exported["retrieved_by"].tolist() == out.items["retrieved_by"].map(" + ".join).tolist()


def test_a_single_model_retrieves_nothing(rec):
    out = rec.recommend([Event(NARUTO, 3), Event(BLEACH, 2), Event(ONE_PIECE, 3)], k=5)
    assert out.items["retrieved_by"].map(len).eq(0).all() and not rec.scores([[NARUTO, BLEACH]]).retrieved.any()


# ------------------------------------------------------------------------------------- batch, similar, search

def test_batch_matches_single_requests(rec):
    histories = [[Event(a, 1 + i % 3) for i, a in enumerate(vocab_ids(rec, n, seed=n))] for n in (0, 1, 5, 30)]
    batch = rec.recommend_batch(histories, k=7, batch_size=3)
    for user, events in enumerate(histories):
        single = rec.recommend(events, k=7, explain=False).items
        mine = batch[batch["user"] == user]
        assert mine["item_id"].tolist() == single["item_id"].tolist()
        assert np.allclose(mine["score"], single["score"], atol=1e-6)
    assert batch.groupby("user")["path"].first().tolist() == ["popularity", "sequence+genre", "sequence+genre",
                                                              "sequence+genre"]


def test_similar_exact_and_faiss(rec):
    sims = rec.similar(NARUTO, k=10)
    unit = rec._item_unit
    iid = rec.iid_of_row[rec.rows_of(np.array([NARUTO]))[0]]
    brute = np.argsort(-(unit[1:] @ unit[iid]), kind="stable")[:11]
    expected = [i + 1 for i in brute.tolist() if i + 1 != iid][:10]
    assert sims["item_id"].tolist() == rec.catalogue["item_id"].to_numpy()[rec.row_of_iid[expected]].tolist()
    assert (sims["source"] == "embedding").all() and NARUTO not in sims["item_id"].tolist()
    approx = rec.similar(NARUTO, k=10, use_faiss=True)
    common = set(approx["item_id"]) & set(sims["item_id"])
    assert len(common) >= 8  # HNSW is approximate; on 2,000 items it finds nearly all
    exact = sims.set_index("item_id")["similarity"]
    found = approx.set_index("item_id")["similarity"]
    assert np.allclose([found[a] for a in common], [exact[a] for a in common], atol=1e-4)


def test_similar_outside_vocabulary_and_unknown(rec):
    outside = content_only_ids(rec, 1)[0]
    sims = rec.similar(outside, k=5)
    assert (sims["source"] == "genre").all() and outside not in sims["item_id"].tolist()
    with pytest.raises(predict.UnknownTitle, match="item_id 99999999 is not in the catalogue"):
        rec.similar(99_999_999)


@pytest.mark.parametrize("query, expected", [("naruto", 20), ("Naruto", 20), ("shingeki", 16498),
                                             ("shingeki no kyojn", 16498), ("narutoo", 20),
                                             ("fullmetal alchemist brotherhood", 5114), ("death note", 1535)])
def test_search_is_typo_tolerant(rec, query, expected):
    found = rec.search(query, limit=5)
    assert expected in found["item_id"].tolist()[:2], found[["item_id", "name", "match"]]


def test_a_typo_finds_the_title_before_others_that_share_letters_across_words(rec):
    """Issue: "narto" listed Sword Art Online second ("art o" matched part of the query)."""
    names = rec.search("narto", limit=5)["name"].str.lower().tolist()
    assert all("naruto" in name for name in names[:2]), names


def test_search_edge_cases(rec):
    assert len(rec.search("", limit=5)) == 0 and len(rec.search("   ", limit=5)) == 0
    assert len(rec.search("qzxqzxqzxqzx", limit=5)) == 0
    with pytest.raises(ValueError, match=r"limit: 0 is not an integer in 1\.\.100"):
        rec.search("naruto", limit=0)
    with pytest.raises(ValueError, match="query"):
        rec.search(None)


def test_search_reads_at_most_200_characters_of_the_query(rec, monkeypatch):
    """Defect: the cost grew with the query (20k characters 7 s; a megabyte ran for minutes)."""
    seen = []
    real = predict.process.cdist
    monkeypatch.setattr(predict.process, "cdist", lambda q, *a, **k: seen.append(len(q[0])) or real(q, *a, **k))
    long = "naruto " * 200_000  # 1.4 MB
    assert rec.search(long)["item_id"].tolist() == rec.search(long[:predict.MAX_QUERY_CHARS])["item_id"].tolist()
    assert seen and max(seen) <= predict.MAX_QUERY_CHARS == 200


# ---------------------------------------------------------------------------------------------- loading

@pytest.fixture(scope="module")
def sample_checkpoint(processed_sample, tmp_path_factory):
    ds = load_dataset(processed_sample)
    model = small_model(ds.n_items, n_time_bins=ds.n_time_bins, seed=3)
    path = tmp_path_factory.mktemp("ckpt") / "sasrec.pt"
    save_checkpoint(path, model, {}, ds.meta, {})
    return path


def test_load_checkpoint_with_its_catalogue(processed_sample, sample_checkpoint):
    rec = Recommender.load(sample_checkpoint, processed_sample)
    ds = load_dataset(processed_sample)
    assert len(rec.catalogue) >= ds.n_items  # the synthetic catalogue file recorded in meta.json
    out = rec.recommend([Event(a, 3, 1.5e9 + i) for i, a in enumerate(ds.items["item_id"][:5])], k=5)
    assert out.path == "sequence+genre" and len(out.items) == 5


def test_time_bins_follow_the_data_scheme(processed_sample, sample_checkpoint):
    rec = Recommender.load(sample_checkpoint, processed_sample)
    info = rec.meta["time_bins"]
    assert rec.meta["has_timestamps"] and info["n_bins"] > 1
    first = period_start(info["first_period"], info["scheme"])
    ids = rec.dataset.items["item_id"][:4].tolist()
    h = rec.history([Event(ids[0], 2, first - 10**8), Event(ids[1], 2, first + 40 * 86400),
                     Event(ids[2], 2, 4.0e9), Event(ids[3], 2, first)])
    assert h.time_bin.tolist() == [1, 1, 2, info["n_bins"]]  # sorted by time: before, first, second month, future
    assert rec.history([Event(ids[0], 2)]).time_bin.tolist() == [info["n_bins"]]  # no timestamp: now


def test_load_refuses_a_checkpoint_of_other_data(processed_sample, tmp_path):
    ds = load_dataset(processed_sample)
    other = small_model(ds.n_items + 1)
    meta = dict(ds.meta, iid_map_sha256="0" * 64)
    path = tmp_path / "other.pt"
    save_checkpoint(path, other, {}, meta, {})
    with pytest.raises(CheckpointMismatch, match="iid map"):
        Recommender.load(path, processed_sample)


def test_load_refuses_a_tampered_iid_map(processed_sample, sample_checkpoint, tmp_path):
    copy = tmp_path / "processed"
    shutil.copytree(processed_sample, copy)
    mapping = json.loads((copy / "iid_map.json").read_text())
    first, second = list(mapping)[:2]
    mapping[first], mapping[second] = mapping[second], mapping[first]
    (copy / "iid_map.json").write_text(json.dumps(mapping))
    with pytest.raises(ValueError, match="iid_map.json: sha256 differs"):
        Recommender.load(sample_checkpoint, copy)


def test_catalogue_must_hold_the_model_titles(anime, catalogue):
    with pytest.raises(ValueError, match="missing from it"):
        Recommender(small_model(anime.n_items), anime, catalogue.iloc[100:])


# ---------------------------------------------------------------------------------------------- benchmark

def test_latency_benchmark_quick_smoke(tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("latency", predict.REPO_ROOT / "benchmarks" / "latency.py")
    latency = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(latency)
    threads = torch.get_num_threads()
    try:
        assert latency.main(["--quick", "--out", str(tmp_path / "latency.json"), "--rows", "sasrec-set",
                             "sasrec-time", "--rounds", "4"]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "latency.json").read_text())
    rows = result["rows"]
    assert list(rows) == ["sasrec-set", "sasrec-time"] and result["headline"].startswith("sasrec-set")
    assert rows["sasrec-set"]["model"]["permutations"] > 0 == rows["sasrec-time"]["model"]["permutations"]
    assert result["kind"] == "sasrec" and result["p50_ms"] == rows["sasrec-set"]["p50_ms"]
    for row in rows.values():
        assert row["catalogue_items"] == 12_294 and row["vocabulary_items"] == 12_294
        assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"] and row["batch"]["users_per_s"] > 0
    turns = result["interleaved"]
    assert turns["rounds"] == 4 and turns["calls_per_round"] == 5 and list(turns["rows"]) == list(rows)
    for row in turns["rows"].values():
        assert len(row["round_p50_ms"]) == 4 and 0 < row["p50_ms"] <= row["p99_ms"]
    assert "users/s" in capsys.readouterr().out


def test_events_without_timestamps_count_as_now(processed_sample, sample_checkpoint):
    rec = Recommender.load(sample_checkpoint, processed_sample)
    ids = rec.dataset.items["item_id"][:3].tolist()
    n_bins = rec.meta["time_bins"]["n_bins"]
    for events in ([(ids[0], 2), (ids[1], 3), (ids[2], 1)], [Event(a, 2) for a in ids], [{"item_id": a} for a in ids],
                   ids):
        h = rec.history(events)
        assert h.time_bin.tolist() == [n_bins] * 3
    assert predict.parse_events([(ids[0], 2), (ids[1],)])[2] is None
    item_ids, feedback, stamps = predict.parse_events([(7, "love", 5), Event(8, 1, 6.5), {"item_id": 9, "timestamp": 7}])
    assert item_ids.tolist() == [7, 8, 9] and feedback.tolist() == [3, 1, 2] and stamps.tolist() == [5, 6.5, 7]


def test_batch_with_fewer_unseen_titles_than_k(anime, catalogue):
    few = catalogue[catalogue["item_id"].isin(anime.items["item_id"])]  # the catalogue = the model's titles
    rec = Recommender(small_model(anime.n_items), anime, few)
    seen_almost_all = [Event(a, 2) for a in few["item_id"].tolist()[:-3]]
    batch = rec.recommend_batch([seen_almost_all, [Event(NARUTO, 3), Event(BLEACH, 3)]], k=10)
    assert (batch["user"] == 0).sum() == 3 and (batch["user"] == 1).sum() == 10
    assert len(rec.recommend(seen_almost_all, k=10).items) == 3


# ---------------------------------------------------------------------------------------------- EASE served


@pytest.fixture(scope="module")
def ease_rec(ease_checkpoint, processed_anime) -> Recommender:
    return Recommender.load(ease_checkpoint, processed_anime)


def test_ease_is_served_end_to_end(ease_rec):
    rec = ease_rec
    described = rec.describe()
    assert described["model"] == {"kind": "ease", "l2": 150.0, "liked_targets": True, "n_items": rec.n_items}
    assert described["max_len"] is None
    assert len(rec.catalogue) > rec.n_items  # the full catalogue recorded in meta.json
    ids = vocab_ids(rec, 250, seed=5)  # more than any SASRec window: EASE reads them all
    events = [Event(a, DISLIKE if i % 4 == 0 else LOVE) for i, a in enumerate(ids)]
    out = rec.recommend(events, k=10)
    assert out.path == "sequence+genre" and out.n_truncated == 0 and len(out.items) == 10
    assert not set(out.items["item_id"]) & set(ids) and out.items["model_score"].notna().any()
    assert len(out.explanations) and out.explanations["similarity"].notna().all()
    assert out.items["reason"].str.len().gt(0).all()
    shuffled = [events[i] for i in np.random.default_rng(1).permutation(len(events))]
    assert rec.recommend(shuffled, k=10, explain=False).items["item_id"].tolist() == out.items["item_id"].tolist()
    similar = rec.similar(ids[1], k=5)
    assert len(similar) == 5 and similar["source"].eq("embedding").all() and ids[1] not in similar["item_id"].tolist()
    assert similar["similarity"].is_monotonic_decreasing



def test_a_pick_is_named_only_where_its_similarity_is_clearly_positive(rec):
    assert 0 < rec.explainer.min_similarity < 1 and 0 < rec.explainer.min_genre_similarity < 1
    events = [Event(a, LOVE) for a in vocab_ids(rec, 12, seed=31)]
    out = rec.recommend(events, k=30, alpha=0.2)
    e = out.explanations.merge(out.items[["item_id", "source"]], on="item_id")
    by_model = e["source"] == "sequence"
    assert len(e) and (e.loc[by_model, "similarity"] > rec.explainer.min_similarity).all()
    assert (e.loc[~by_model, "genre_similarity"] > rec.explainer.min_genre_similarity).all()
    unexplained = out.items[~out.items["item_id"].isin(e["item_id"])]
    assert not unexplained["reason"].str.startswith("Because you").any()


def test_exclusions_and_the_floor_of_genre_only_picks(rec):
    events = [Event(NARUTO, LOVE), Event(BLEACH, LOVE), Event(DEATH_NOTE, LIKE)]
    first = rec.recommend(events, k=5).items["item_id"].tolist()
    again = rec.recommend(events, k=5, exclude_ids=first, exclude_genres=["Comedy"]).items
    assert not set(again["item_id"]) & set(first) and not again["genres"].map(lambda g: "Comedy" in g).any()
    assert rec.popular(k=3, exclude_ids=rec.popular(k=3)["item_id"]).iloc[0]["rank"] == 1
    genre_only = rec.recommend(events, k=50, alpha=1.0).items
    assert genre_only["members"].min() < 5_000  # without a floor, genres alone surface near-unknown titles
    floored = rec.recommend(events, k=50, alpha=1.0, genre_only_min_members=5_000).items
    assert (floored["members"] >= 5_000).all() and len(floored) == 50
    blended = rec.recommend(events, k=200, alpha=0.5, genre_only_min_members=50_000).items
    outside = ~blended["in_model"]
    assert (blended.loc[outside, "members"] >= 50_000).all()  # titles the model does not know: genres alone
    with pytest.raises(ValueError, match="exclude_genres"):
        rec.recommend(events, exclude_genres=["Nope"])


def test_a_title_pushed_down_by_a_dislike_says_so(anime, catalogue):
    rec = Recommender(small_model(anime.n_items), anime, catalogue, dislike_weight=0.5)
    said = 0
    for seed in range(5):
        ids = vocab_ids(rec, 9, seed=200 + seed)
        out = rec.recommend([Event(a, LOVE) for a in ids[:8]] + [Event(ids[8], DISLIKE)], k=20).items
        pushed = out[out["pushed_down_by"].notna()]
        assert (pushed["rank_without_dislikes"] < pushed["rank"]).all()
        assert (pushed["pushed_down_by"] == rec.lookup([ids[8]])["name"][0]).all()
        for row in pushed.itertuples():
            assert f"ranked #{row.rank}, #{row.rank_without_dislikes} without the penalty for resembling " \
                   f"{row.pushed_down_by}, which you disliked" in row.reason
        assert not out.loc[out["pushed_down_by"].isna(), "reason"].str.contains("which you disliked").any()
        said += len(pushed)
    assert said > 0
    plain = rec.recommend([Event(a, LOVE) for a in vocab_ids(rec, 5, seed=3)], k=10).items
    assert plain["pushed_down_by"].isna().all() and (plain["rank_without_dislikes"] == plain["rank"]).all()


def test_reasons_keep_whole_titles_and_differ_per_recommendation(ease_rec):
    steins_gate = 9253
    assert ease_rec.lookup([steins_gate])["name"][0] == "Steins;Gate"
    out = ease_rec.recommend([Event(steins_gate, LOVE), Event(NARUTO, LOVE), Event(DEATH_NOTE, LIKE)], k=10)
    reasons = out.items["reason"]
    assert reasons.str.contains("Because you loved Steins;Gate ·", regex=False).any()
    assert reasons.nunique() == len(reasons)  # each its own evidence: nearest pick, people who watched both, genres
    assert reasons.str.contains("people watched both").any()
