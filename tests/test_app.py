"""The Streamlit demo through Streamlit's own AppTest: what the page shows after each action.

AppTest cannot type into an st.data_editor; the editor's edits -> events step is tested in
test_ui.py, and here ratings go through the page's search-and-rate widgets.
"""
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from nostrade import finetune as ft
from nostrade.dataset import load_dataset, sha256_of
from nostrade.events import EventLog
from nostrade.history import UserHistories

APP = str(Path(__file__).resolve().parents[1] / "code" / "app.py")
TIMEOUT = 120
USER = 1_000_000_123


@pytest.fixture(autouse=True)
def no_clusters(tmp_path, monkeypatch):
    """No taste clusters unless a test writes them (the repo's artifacts/clusters.json is not read)."""
    monkeypatch.setenv("NOSTRADE_CLUSTERS", str(tmp_path / "clusters.json"))


@pytest.fixture
def paths(tmp_path, anime_checkpoint, processed_anime, monkeypatch):
    checkpoint = tmp_path / "sasrec.pt"
    shutil.copyfile(anime_checkpoint, checkpoint)
    events = tmp_path / "events.db"
    monkeypatch.setenv("NOSTRADE_DATA", str(processed_anime))
    monkeypatch.setenv("NOSTRADE_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("NOSTRADE_EVENTS", str(events))
    monkeypatch.delenv("NOSTRADE_CATALOGUE", raising=False)
    return {"checkpoint": checkpoint, "events": events, "data": processed_anime,
            "clusters": tmp_path / "clusters.json"}


def log_history(paths) -> pd.DataFrame:
    """The demo user's current history, as the app reads it."""
    return UserHistories(load_dataset(paths["data"]), EventLog(paths["events"])).frame(USER)


def start(user: int = USER) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["user"] = str(user)
    return at.run()


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def rate(at: AppTest, query: str, feedback: str) -> AppTest:
    at.text_input(key="pick_query").input(query).run()
    at.radio(key="pick_feedback").set_value(feedback)
    at.button(key="rate").click().run()
    no_errors(at)
    return at


def table(at: AppTest, column: str) -> pd.DataFrame:
    """The (last) table on the page that has ``column``."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with a {column!r} column"
    return found[-1]


def subheaders(at: AppTest) -> list[str]:
    return [h.value for h in at.subheader]


def caption_with(at: AppTest, text: str) -> str:
    found = [c.value for c in at.caption if text in c.value]
    assert found, f"no caption with {text!r}"
    return found[0]


@pytest.fixture
def rated(paths):
    at = start()
    for query, feedback in (("naruto", "Love"), ("shingeki", "Love"), ("death note", "Like")):
        rate(at, query, feedback)
    return at


# ----------------------------------------------------------------------------------------------------------------


def test_first_page_shows_popular_titles_and_a_cold_start(paths):
    at = start()
    no_errors(at)
    assert "Your picks (0)" in subheaders(at)
    assert "the most popular titles" in caption_with(at, "How:")
    top = table(at, "Why")
    assert len(top) == 10 and "Death Note" in top["Title"].tolist()


def test_the_same_titles_in_another_click_order_give_the_same_top_10(rated, paths):
    """The sample's order is not time: the served model is a set model, so click order cannot matter."""
    other = start(user=USER + 7)
    for query, feedback in (("death note", "Like"), ("shingeki", "Love"), ("naruto", "Love")):
        rate(other, query, feedback)
    no_errors(other)
    assert table(other, "Why")["Title"].tolist() == table(rated, "Why")["Title"].tolist()


def test_rating_three_titles_gives_explained_recommendations_and_logs_each_click(rated, paths):
    at = rated
    assert "Your picks (3)" in subheaders(at)
    assert "what fans of your titles watched and liked (SASRec), nudged 20% toward your genres" in caption_with(at, "How:")
    rated_titles = {"Naruto", "Shingeki no Kyojin", "Death Note"}
    picks = table(at, "In model")
    assert set(picks["Title"]) == rated_titles and set(picks["Your rating"]) == {"Love", "Like"}
    top = table(at, "Why")
    assert len(top) == 10 and not rated_titles & set(top["Title"])
    assert top["Score"].is_monotonic_decreasing and top["Why"].str.len().min() > 0
    assert top["Why"].str.startswith("Because you").any()
    why = table(at, "Because of your pick")
    assert len(why) and set(why["Because of your pick"]) <= rated_titles
    assert set(why["Recommended"]) <= set(top["Title"])
    assert "Why these?" in subheaders(at)
    assert any("Your picks → recommendations" in caption for image in at.image for caption in image.captions)
    assert "Influence graph" in subheaders(at)
    for section in ("Because you loved Shingeki no Kyojin", "Similar to your taste", "Most popular",
                    "Something different"):
        assert section in subheaders(at)
    stored = EventLog(paths["events"]).events()
    assert stored["user_id"].tolist() == [USER] * 3 and stored["feedback_type"].tolist() == [3, 3, 2]
    assert stored["session_id"].nunique() == 1
    assert at.radio(key="pick_feedback").value is None  # the next title's rating is chosen afresh


def test_picks_come_back_from_the_log_in_a_new_session(rated):
    again = start()
    assert "Your picks (3)" in subheaders(again)
    assert "Your picks (0)" in subheaders(start(user=USER + 1))


def test_clear_all_removes_the_picks_and_undo_brings_them_back(rated, paths):
    before = log_history(paths)[["item_id", "feedback"]]
    rated.button(key="clear_all").click().run()
    no_errors(rated)
    assert "Your picks (0)" in subheaders(rated)
    assert log_history(paths).empty
    assert rated.button(key="undo_clear").label == "Undo clear (3 picks)"
    rated.button(key="undo_clear").click().run()
    no_errors(rated)
    assert "Your picks (3)" in subheaders(rated) and not [b for b in rated.button if b.key == "undo_clear"]
    assert log_history(paths)[["item_id", "feedback"]].equals(before)  # the same ratings, in the same order


def test_rate_without_a_rating_chosen_says_so(paths):
    at = start()
    at.text_input(key="pick_query").input("naruto").run()
    at.button(key="rate").click().run()
    assert "Choose a title and Dislike, Like or Love first." in at.error[0].value
    assert log_history(paths).empty


def test_alpha_and_blend_toggle_change_the_ranking(rated):
    at = rated
    at.slider(key="alpha").set_value(0.0).run()
    assert "what fans of your titles watched and liked (SASRec)" in caption_with(at, "How:")
    model_only = table(at, "Why")["Title"].tolist()
    at.slider(key="alpha").set_value(1.0).run()
    no_errors(at)
    assert "your favourite genres only" in caption_with(at, "How:")
    assert (table(at, "Why")["Type"].notna()).all()
    genre_only = table(at, "Why")["Title"].tolist()
    assert genre_only != model_only
    at.toggle(key="blend").set_value(False).run()
    assert "what fans of your titles watched and liked (" in caption_with(at, "How:")
    assert table(at, "Why")["Title"].tolist() == model_only


def test_k_and_sidebar_filters_apply_to_the_recommendations(rated):
    at = rated
    at.slider(key="k").set_value(7).run()
    assert len(table(at, "Why")) == 7 and "Top 7 for you" in subheaders(at)
    at.multiselect(key="filter_genres").set_value(["Comedy"]).run()
    at.multiselect(key="filter_types").set_value(["Movie"]).run()
    no_errors(at)
    top = table(at, "Why")
    assert len(top) and top["Genres"].str.contains("Comedy").all() and (top["Type"] == "Movie").all()
    at.number_input(key="min_members").set_value(100_000).run()
    shown = len(table(at, "Why"))
    assert shown <= 7 and f"Top {shown} for you" in subheaders(at)
    if shown < 7:
        assert f"Only {shown} of the K = 7 asked for pass the filters" in caption_with(at, "How:")


def test_predict_button_when_live_update_is_off(rated):
    at = rated
    at.toggle(key="live").set_value(False).run()
    before = table(at, "Why")["Title"].tolist()
    rate(at, "one piece", "Love")
    assert table(at, "Why")["Title"].tolist() == before  # not updated yet
    assert any("press Predict" in i.value for i in at.info)
    at.slider(key="k").set_value(15).run()
    assert "Top 10 for you" in subheaders(at)  # the heading is of the list shown, not of the slider
    at.button(key="predict").click().run()
    no_errors(at)
    assert not any("press Predict" in i.value for i in at.info)
    assert table(at, "Why")["Title"].tolist() != before and "Top 15 for you" in subheaders(at)


def test_catalogue_search_and_filters(paths):
    at = start()
    catalogue = table(at, "Members")
    assert len(catalogue) == 500 and catalogue["Members"].is_monotonic_decreasing
    at.text_input(key="catalogue_query").input("naruto").run()
    assert "Naruto" in table(at, "Members")["Title"].tolist()
    at.text_input(key="catalogue_query").input("shingeki").run()
    assert "Shingeki no Kyojin" in table(at, "Members")["Title"].tolist()
    at.text_input(key="catalogue_query").input("").run()
    at.multiselect(key="catalogue_genres").set_value(["Romance"]).run()
    at.multiselect(key="catalogue_types").set_value(["Movie"]).run()
    no_errors(at)
    filtered = table(at, "Members")
    assert len(filtered) and filtered["Genres"].str.contains("Romance").all() and (filtered["Type"] == "Movie").all()


def test_export_downloads_the_top_k_with_explanations(rated, monkeypatch):
    exported = {}
    original = streamlit.download_button

    def recording(label, data, *args, **kwargs):
        exported[label] = (data, kwargs.get("file_name"))
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", recording)
    rated.run()
    data, name = exported["Export Top-K with explanations (CSV)"]
    csv = pd.read_csv(io.StringIO(data))
    assert name.endswith(".csv")
    assert csv["name"].tolist() == table(rated, "Why")["Title"].tolist()
    assert {"score", "reason", "because", "because_similarity"} <= set(csv.columns)


def test_a_long_search_that_finds_nothing_is_echoed_short(paths):
    at = start()
    at.text_input(key="pick_query").input("zq" * 150).run()
    no_errors(at)
    said = caption_with(at, "No title matches")
    assert said == f"No title matches '{'zq' * 20}…'."  # 40 characters of the 300, not all of them


def test_when_nothing_passes_the_filters_the_page_says_so_and_offers_no_csv(rated, monkeypatch):
    exported = []
    monkeypatch.setattr(streamlit, "download_button", lambda label, *args, **kwargs: exported.append(label))
    rated.number_input(key="min_members").set_value(10_000_000).run()
    no_errors(rated)
    heads = subheaders(rated)
    assert "No picks pass these filters" in heads and not any(h.startswith("Top ") for h in heads)
    assert "Why these?" not in heads and not exported  # no "No explanations yet" beside 3 picks, no empty CSV
    assert "Loosen the filters" in caption_with(rated, "How:")


def test_ratings_and_save_for_later_through_the_catalogue_table(paths):
    """The catalogue table, driven with the edit state the browser would send (AppTest cannot type in it)."""
    at = start()
    shown = at.session_state["catalogue_shown"]
    key = f"catalogue_editor_{at.session_state['editor_version']}"
    at.session_state[key] = {"edited_rows": {0: {"Your rating": "Love"}, 1: {"Save for later": True}},
                             "added_rows": [], "deleted_rows": []}
    at.run()
    no_errors(at)
    log = EventLog(paths["events"])
    assert log_history(paths)["item_id"].tolist() == [int(shown["item_id"].iloc[0])]
    assert log.saved(USER) == [int(shown["item_id"].iloc[1])]
    assert "Saved for later" in subheaders(at)
    assert "Your picks (1)" in subheaders(at)
    assert table(at, "Members")["Your rating"].iloc[0] == "Love"  # the fresh table shows the stored rating
    at.run()
    assert log.count() == 2  # the same edit is not applied twice


def test_a_new_checkpoint_is_picked_up_without_restart(rated, paths):
    """The whole loop: clicks in the log -> fine-tune -> the running app serves the new checkpoint."""
    at = rated
    old = sha256_of(paths["checkpoint"])
    assert old[:12] in caption_with(at, "sha256")
    report = ft.finetune(paths["events"], paths["checkpoint"], paths["data"],
                         ft.FinetuneConfig(epochs=1, tolerance=1.0, progress=False))  # tolerance 1: always swap
    assert report["accepted"] and report["log"]["log_interactions_added"] == 3
    at.run()
    no_errors(at)
    new = sha256_of(paths["checkpoint"])
    assert new != old and new[:12] in caption_with(at, "sha256")
    assert "Your picks (3)" in subheaders(at)


def test_retrain_button_swaps_in_a_model_that_is_not_worse(rated, paths, monkeypatch):
    """The in-app retrain: the checkpoint file is never written; the fine-tuned one is served when accepted."""
    config = ft.FinetuneConfig  # tolerance 1: always accepted, so this checks the swap, not the training's luck
    monkeypatch.setattr(ft, "FinetuneConfig", lambda progress: config(epochs=1, tolerance=1.0, progress=progress))
    at = rated
    old = sha256_of(paths["checkpoint"])
    assert [b for b in at.button if b.key == "retrain"]
    at.button(key="retrain").click().run()
    no_errors(at)
    tuned = paths["checkpoint"].with_name("sasrec.finetuned.pt")
    assert tuned.exists() and sha256_of(paths["checkpoint"]) == old
    said = at.success[0].value
    assert said.startswith("Retrained on 3 logged ratings of 1 person") and "now serving `sasrec.finetuned.pt`" in said
    assert "NDCG@10" in said and "→" in said
    assert sha256_of(tuned)[:12] in caption_with(at, "sha256") and "Your picks (3)" in subheaders(at)
    assert sorted(p.name for p in paths["checkpoint"].parent.glob("*.pt")) == ["sasrec.finetuned.pt", "sasrec.pt"]


def test_a_worse_retrain_keeps_the_served_model(rated, paths, monkeypatch):
    at = rated
    old = caption_with(at, "sha256")
    config = ft.FinetuneConfig
    monkeypatch.setattr(ft, "FinetuneConfig", lambda progress: config(epochs=1, progress=progress))
    validations = iter([0.5, 0.4])  # the current model first, then the retrained one
    monkeypatch.setattr(ft, "evaluate", lambda score, cases, n_items: {"ndcg@10": next(validations)})
    at.button(key="retrain").click().run()
    no_errors(at)
    assert "0.5000 → 0.4000, worse: still serving `sasrec.pt`" in at.info[0].value
    assert [p.name for p in paths["checkpoint"].parent.glob("*.pt")] == ["sasrec.pt"]
    assert caption_with(at, "sha256") == old


def test_fresh_checkout_without_a_model(tmp_path, monkeypatch):
    monkeypatch.setenv("NOSTRADE_DATA", str(tmp_path / "processed"))
    monkeypatch.setenv("NOSTRADE_CHECKPOINT", str(tmp_path / "sasrec.pt"))
    monkeypatch.setenv("NOSTRADE_EVENTS", str(tmp_path / "events.db"))
    at = start()
    no_errors(at)
    assert "No trained model yet" in at.warning[0].value
    assert at.button(key="train").label == "Train the default model"
    assert "Popular titles meanwhile" in subheaders(at)
    assert table(at, "members")["name"].iloc[0] == "Death Note"


def press_train(tmp_path, monkeypatch, train_args: str) -> AppTest:
    """A fresh folder with no model: the first page, then its "Train" button pressed."""
    monkeypatch.setenv("NOSTRADE_DATA", str(tmp_path / "processed"))
    monkeypatch.setenv("NOSTRADE_CHECKPOINT", str(tmp_path / "sasrec.pt"))
    monkeypatch.setenv("NOSTRADE_EVENTS", str(tmp_path / "events.db"))
    monkeypatch.setenv("NOSTRADE_TRAIN_ARGS", train_args)
    at = start()
    at.button(key="train").click().run(timeout=300)
    return at


def test_train_button_trains_the_default_model_then_recommends(tmp_path, monkeypatch):
    at = press_train(tmp_path, monkeypatch, "--epochs 1 --max-len 20 --d-model 16 --n-layers 1 --num-threads 1")
    no_errors(at)
    assert (tmp_path / "sasrec.pt").exists() and (tmp_path / "processed" / "meta.json").exists()
    assert "Top 10 for you" in subheaders(at)


def test_train_button_with_bad_training_flags_says_so(tmp_path, monkeypatch):
    at = press_train(tmp_path, monkeypatch, "--epochs many")
    assert not at.exception
    assert "Training failed: exit status 2" in at.error[0].value and not (tmp_path / "sasrec.pt").exists()


def test_a_checkpoint_for_other_data_is_explained_not_a_traceback(paths, tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("NOSTRADE_CHECKPOINT", str(tiny_checkpoint))
    at = start()
    assert not at.exception
    assert "cannot be used" in at.warning[0].value and "iid map" in at.warning[0].value
    assert at.button(key="train")


def test_a_history_longer_than_the_largest_k_renders(paths):
    """600 logged Loves: the sections that ask predict.py for k + len(history) titles stay within its cap."""
    log = EventLog(paths["events"])
    for item_id in pd.read_parquet(paths["data"] / "items.parquet")["item_id"].head(600).tolist():
        log.append(USER, int(item_id), 3)
    at = start()
    no_errors(at)
    assert "Your picks (600)" in subheaders(at)
    assert any(h.startswith("Because you loved") for h in subheaders(at))


def test_a_served_ranker_shows_which_generators_found_each_title(tmp_path, ranker_checkpoint, processed_anime,
                                                                 monkeypatch):
    checkpoint = tmp_path / "ranker.pt"
    shutil.copyfile(ranker_checkpoint, checkpoint)
    monkeypatch.setenv("NOSTRADE_DATA", str(processed_anime))
    monkeypatch.setenv("NOSTRADE_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("NOSTRADE_EVENTS", str(tmp_path / "events.db"))
    monkeypatch.delenv("NOSTRADE_CATALOGUE", raising=False)
    at = start()
    for query, feedback in (("naruto", "Love"), ("shingeki", "Love"), ("death note", "Like")):
        rate(at, query, feedback)
    assert "what fans of your titles watched and liked (two-stage ranker)" in caption_with(at, "How:")
    top = table(at, "Found by")
    assert len(top) == 10 and top["Found by"].str.len().min() > 0
    phrases = {"from people like you", "similar genres", "popular"}
    assert all(set(found.split(", ")) <= phrases for found in top["Found by"])
    assert all(found.split(", ")[0].capitalize() in why for found, why in zip(top["Found by"], top["Why"]))


def test_browse_by_taste_rows_and_adding_a_title_from_them(paths):
    at = start()
    assert "Browse by taste" not in subheaders(at)  # no clusters file: no rows
    from nostrade import clusters, prep
    assert clusters.main(["--checkpoint", str(paths["checkpoint"]), "--data", str(paths["data"]),
                          "--out", str(paths["clusters"]), "--catalogue", str(prep.DEFAULT_ITEMS),
                          "--k-min", "4", "--k-max", "5"]) == 0
    made = json.loads(paths["clusters"].read_text())
    at = start()
    no_errors(at)
    assert "Browse by taste" in subheaders(at)
    heads = [m.value for m in at.markdown if m.value.startswith("**")]
    every = [f"**{c['name']}** · {c['catalogue_size']:,} titles ({c['size']:,} the model knows)"
             for c in sorted(made["clusters"], key=lambda c: -c["size"])]
    assert heads and [h for h in every if h in heads] == heads  # largest first; a row whose name fails is left out
    choice = at.selectbox(key="taste_title")
    assert len(choice.options) == 5 * len(heads)
    id_of = {r["name"]: r["item_id"] for c in made["clusters"] for r in c["representatives"]}
    first_name = choice.options[0].rsplit(" — ", 1)[0]
    first = {"item_id": id_of[first_name], "name": first_name}
    choice.set_value(first["item_id"])
    at.radio(key="taste_feedback").set_value("Love")
    at.button(key="taste_add").click().run()
    no_errors(at)
    assert "Your picks (1)" in subheaders(at)
    assert log_history(paths)[["item_id", "feedback"]].values.tolist() == [[first["item_id"], 3]]
    assert not any(o.startswith(f"{first['name']} — ") for o in at.selectbox(key="taste_title").options)


def test_a_clusters_file_for_other_data_is_a_caption_not_a_traceback(paths):
    paths["clusters"].write_text(json.dumps({"iid_map_sha256": "f" * 64, "clusters": []}))
    at = start()
    no_errors(at)
    assert "made for other data" in caption_with(at, "No taste rows")


def test_a_bad_clusters_file_is_a_one_line_note_and_the_rest_of_the_page_is_drawn(paths):
    """Issue 30 item 8: `"size": Infinity` raised inside Streamlit and nothing below the taste rows was drawn."""
    sha = load_dataset(paths["data"]).iid_map_hash
    paths["clusters"].write_text('{"iid_map_sha256": "%s", "clusters": [{"name": "A", "size": Infinity, '
                                 '"representatives": []}]}' % sha)
    at = start()
    no_errors(at)
    assert "clusters[0].size: inf is not a whole number" in caption_with(at, "No taste rows")
    assert "Catalogue" in subheaders(at)  # what comes after the taste rows is drawn


def test_a_damaged_fine_tuned_file_falls_back_to_the_checkpoint_with_the_reason(paths):
    """Defect: a damaged model.finetuned.pt newer than the checkpoint took the whole page down."""
    tuned = paths["checkpoint"].with_name("sasrec.finetuned.pt")
    tuned.write_bytes(paths["checkpoint"].read_bytes()[:5000])
    at = start()
    assert not at.exception and not at.error
    said = at.warning[0].value
    assert said.startswith(f"sasrec.finetuned.pt is not served ({tuned}: ") and said.endswith("the last good model")
    assert sha256_of(paths["checkpoint"])[:12] in caption_with(at, "sha256")
