"""nostrade.clusters: distinctive names, every title in one cluster, seeded, one-line errors."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from nostrade import clusters, train
from nostrade.clusters import ClusterConfig, cluster_titles
from nostrade.dataset import load_dataset

N_GROUPS, PER_GROUP = 4, 30
SMALL = ClusterConfig(k_min=2, k_max=7, n_init=4, n_representatives=8)


def synthetic_catalogue():
    """Four groups of titles: each group's own genre and vectors near its own centre; "Common" on every title,
    "Half" on every other title of every group (equally frequent in every cluster)."""
    rng = np.random.default_rng(0)
    n = N_GROUPS * PER_GROUP
    group = np.repeat(np.arange(N_GROUPS), PER_GROUP)
    vectors = rng.normal(size=(N_GROUPS, 8))[group] * 3 + rng.normal(size=(n, 8))
    items = pd.DataFrame({
        "iid": np.arange(1, n + 1), "item_id": np.arange(1001, n + 1001), "name": [f"title {i}" for i in range(n)],
        "genres": [[f"Group{g}", "Common"] + (["Half"] if i % 2 else []) for i, g in enumerate(group)],
        "type": ["TV"] * n, "episodes": rng.integers(1, 60, n), "members": rng.integers(10, 10_000, n)})
    return vectors, items, group


def test_names_are_the_distinctive_genres_not_the_common_ones():
    vectors, items, group = synthetic_catalogue()
    record = cluster_titles(vectors, items, items["members"].to_numpy(float), SMALL)
    assert record["k"] == N_GROUPS
    names = [c["name"] for c in record["clusters"]]
    assert sorted(names) == [f"Group{g}" for g in range(N_GROUPS)]  # not Common, not Half, not the type everyone has
    for c in record["clusters"]:
        assert c["top_genres"][0]["genre"] == c["name"] and c["top_genres"][0]["share"] == 1.0
        assert c["genre_tfidf"]["Common"] == 0.0


def test_a_name_holds_for_most_of_its_titles_and_of_those_shown():
    """The name check: each named cluster's genres are carried by >= NAME_MIN_SHARE of its titles and of the
    titles it shows first; "Hentai", distinctive of group 0 but on a quarter of it, names nothing."""
    vectors, items, group = synthetic_catalogue()
    items["genres"] = [g + (["Hentai"] if group[i] == 0 and i % 4 == 0 else []) for i, g in enumerate(items["genres"])]
    genres_nudge = dataclasses.replace(SMALL, genre_weight=0.2)  # the groups are the vectors' here
    record = cluster_titles(vectors, items, items["members"].to_numpy(float), genres_nudge)
    assert record["name_min_share"] == clusters.NAME_MIN_SHARE == 0.6
    group0 = next(c for c in record["clusters"] if "Group0" in c["genre_tfidf"])
    assert group0["genre_tfidf"]["Hentai"] > 0 and group0["name"] == "Group0"  # distinctive, but on a quarter
    for c in record["clusters"]:
        check = c["name_check"]
        assert check["genres"] == c["name"].split(" · ")
        assert check["share_of_titles"] >= 0.6 and check["share_of_shown"] >= 0.6


def test_a_cluster_sharing_no_genre_is_named_after_its_best_known_title():
    vectors, items, group = synthetic_catalogue()
    items["genres"] = [[f"Solo{i}"] for i in range(len(items))]  # no genre on more than one title
    record = cluster_titles(vectors, items, items["members"].to_numpy(float), SMALL)
    for c in record["clusters"]:
        assert c["name"] == f"Watched with {c['representatives'][0]['name']}" and c["name_check"]["genres"] == []


def test_sizes_sum_to_the_titles_and_representatives_are_members():
    vectors, items, group = synthetic_catalogue()
    record = cluster_titles(vectors, items, items["members"].to_numpy(float), SMALL)
    assert sum(c["size"] for c in record["clusters"]) == record["n_titles"] == len(items)
    for c in record["clusters"]:
        genre = c["name"]
        reps = items.set_index("iid").loc[[r["iid"] for r in c["representatives"]]]
        assert len(reps) == SMALL.n_representatives and all(genre in g for g in reps["genres"])
    assert set(record["criterion"]["scores"]) == {str(k) for k in range(2, 8)}
    assert record["criterion"]["scores"][str(record["k"])] == max(record["criterion"]["scores"].values())


def test_catalogue_titles_without_vectors_join_the_cluster_of_their_side_features():
    vectors, items, _ = synthetic_catalogue()
    extra = [(g, i) for g in range(N_GROUPS) for i in range(g + 1)]  # group g gets g + 1 titles without a vector
    others = pd.DataFrame({"item_id": np.arange(5001, 5001 + len(extra)), "name": "new",
                           "genres": [[f"Group{g}", "Common"] for g, _ in extra], "type": "TV", "episodes": 12,
                           "members": 500})
    catalogue = pd.concat([items.drop(columns="iid"), others], ignore_index=True)
    record = cluster_titles(vectors, items, items["members"].to_numpy(float), SMALL, catalogue)
    assert record["n_catalogue"] == len(catalogue) == sum(c["catalogue_size"] for c in record["clusters"])
    assert {c["name"]: c["catalogue_size"] - c["size"] for c in record["clusters"]} == \
        {f"Group{g}": g + 1 for g in range(N_GROUPS)}
    without = cluster_titles(vectors, items, items["members"].to_numpy(float), SMALL)
    assert [c["name"] for c in without["clusters"]] == [c["name"] for c in record["clusters"]]


def test_same_seed_same_clusters():
    vectors, items, _ = synthetic_catalogue()
    popularity = items["members"].to_numpy(float)
    assert cluster_titles(vectors, items, popularity, SMALL) == cluster_titles(vectors, items, popularity, SMALL)


@pytest.fixture(scope="module")
def ease_checkpoint_of_sample(processed_sample, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ease")
    assert train.main(["--data", str(processed_sample), "--out", str(folder / "ease.pt"), "--model", "ease",
                       "--metrics", str(folder / "metrics.json")]) == 0
    return folder / "ease.pt"


def test_command_with_a_sasrec_checkpoint_uses_its_item_embeddings(processed_sample, tiny_checkpoint, tmp_path):
    out = tmp_path / "clusters.json"
    assert clusters.main(["--checkpoint", str(tiny_checkpoint), "--data", str(processed_sample), "--out", str(out),
                          "--k-min", "3", "--k-max", "5"]) == 0
    record = json.loads(out.read_text())
    n_items = load_dataset(processed_sample).n_items
    assert "SASRec" in record["item_vectors"] and 3 <= record["k"] <= 5
    assert sum(c["size"] for c in record["clusters"]) == n_items
    assert all(1 <= r["iid"] <= n_items for c in record["clusters"] for r in c["representatives"])


def test_command_with_an_ease_checkpoint_uses_als_factors(processed_sample, ease_checkpoint_of_sample, tmp_path):
    out = tmp_path / "clusters.json"
    argv = ["--checkpoint", str(ease_checkpoint_of_sample), "--data", str(processed_sample), "--out", str(out),
            "--k-min", "3", "--k-max", "4"]
    assert clusters.main(argv) == 0
    first = out.read_bytes()
    assert "ALS factors" in json.loads(first)["item_vectors"]
    assert clusters.main(argv) == 0 and out.read_bytes() == first  # seeded: the same file again


@pytest.mark.parametrize("bad, message", [
    (["--data", "no/such/folder"], "no/such/folder"),
    (["--k-min", "9", "--k-max", "4"], "k_min"),
    (["--checkpoint", "garbage"], "garbage"),
])
def test_bad_input_is_a_one_line_error(bad, message, processed_sample, tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "garbage").write_bytes(b"not a checkpoint")
    args = {"--checkpoint": str(tiny_checkpoint), "--data": str(processed_sample), "--out": str(tmp_path / "c.json")}
    for flag, value in zip(bad[::2], bad[1::2]):
        args[flag] = str(tmp_path / value) if value == "garbage" else value
    assert clusters.main([x for pair in args.items() for x in pair]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "c.json").exists()


def test_a_catalogue_with_nothing_to_add_is_a_one_line_error(processed_sample, tiny_checkpoint, tmp_path, capsys):
    catalogue = tmp_path / "anime.csv"
    items = load_dataset(processed_sample).items
    items.assign(genre=items["genres"].map(", ".join), rating=7.0, anime_id=items["item_id"])[  # anime.csv's header
        ["anime_id", "name", "genre", "type", "episodes", "rating", "members"]].to_csv(catalogue, index=False)
    assert clusters.main(["--checkpoint", str(tiny_checkpoint), "--data", str(processed_sample), "--out",
                          str(tmp_path / "c.json"), "--catalogue", str(catalogue), "--k-min", "3", "--k-max", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --catalogue: all of its") and "nothing to add" in err and "\n" not in err
    assert not (tmp_path / "c.json").exists()


def test_a_checkpoint_of_other_data_is_refused(processed_anime, tiny_checkpoint, tmp_path, capsys):
    assert clusters.main(["--checkpoint", str(tiny_checkpoint), "--data", str(processed_anime),
                          "--out", str(tmp_path / "c.json")]) == 2
    assert "iid map" in capsys.readouterr().err


def test_taste_rows_read_back_largest_first_and_refuse_other_data(tmp_path):
    vectors, items, _ = synthetic_catalogue()
    record = {**cluster_titles(vectors, items, items["members"].to_numpy(float), SMALL), "iid_map_sha256": "a" * 64}
    record["clusters"][0]["size"] += 1_000
    path = tmp_path / "clusters.json"
    path.write_text(json.dumps(record))
    rows = clusters.taste_rows(path, "a" * 64)
    assert rows[0]["name"] == record["clusters"][0]["name"] and [len(r["item_ids"]) for r in rows] == [8] * 4
    assert rows[0]["item_ids"] == [r["item_id"] for r in record["clusters"][0]["representatives"]]
    with pytest.raises(ValueError, match="made for other data"):
        clusters.taste_rows(path, "b" * 64)
    path.write_text("{")
    with pytest.raises(ValueError, match="not a readable clusters file"):
        clusters.taste_rows(path, "a" * 64)


def one_cluster(**fields) -> dict:
    return {"name": "Comedy", "size": 3, "catalogue_size": 5, "name_check": {"genres": ["Comedy"]},
            "representatives": [{"item_id": 1, "name": "x"}], **fields}


@pytest.mark.parametrize("text, field", [
    ('{"iid_map_sha256": "%s", "clusters": [{"name": "A", "size": Infinity, "representatives": []}]}',
     "clusters[0].size: inf"),
    ('{"iid_map_sha256": "%s", "clusters": [{"name": "A", "size": 1, "representatives": [{"item_id": 1e30}]}]}',
     "clusters[0].representatives[0].item_id: 1e+30"),
    ('{"iid_map_sha256": "%s", "clusters": [{"name": "A", "size": 1, "catalogue_size": "lots", '
     '"representatives": []}]}', "clusters[0].catalogue_size: 'lots'"),
    ('{"iid_map_sha256": "%s", "clusters": [{"name": 7, "size": 1, "representatives": []}]}', "clusters[0].name"),
    ('{"iid_map_sha256": "%s", "clusters": {"name": "A"}}', "no list of clusters"),
    ('["%s"]', "no list of clusters"),
])
def test_a_bad_clusters_file_is_refused_with_the_field_named(tmp_path, text, field):
    path = tmp_path / "clusters.json"
    path.write_text(text % ("a" * 64))
    with pytest.raises(ValueError) as refused:
        clusters.taste_rows(path, "a" * 64)
    assert str(refused.value).startswith(f"{path}: ") and field in str(refused.value) and "\n" not in str(refused.value)


def test_too_many_clusters_and_non_utf8_are_refused(tmp_path):
    path = tmp_path / "clusters.json"
    path.write_text(json.dumps({"iid_map_sha256": "a" * 64, "clusters": [one_cluster()] * 5_000}))
    with pytest.raises(ValueError, match="5,000 clusters, more than the 50"):
        clusters.taste_rows(path, "a" * 64)
    path.write_bytes(json.dumps({"iid_map_sha256": "a" * 64, "clusters": [one_cluster()]}).encode() + b"\xff\xfe")
    with pytest.raises(ValueError, match=f"{path}: not UTF-8"):
        clusters.taste_rows(path, "a" * 64)
    path.write_text(json.dumps({"iid_map_sha256": "a" * 64, "clusters": [one_cluster()]}))
    assert clusters.taste_rows(path, "a" * 64) == [{"name": "Comedy", "genres": ["Comedy"], "size": 3,
                                                    "catalogue_size": 5, "item_ids": [1]}]


def test_a_clusters_file_written_before_item_id_still_reads(tmp_path):
    path = tmp_path / "clusters.json"
    old = one_cluster(representatives=[{"iid": 1, "anime_id": 7, "name": "x"}, {"iid": 2, "anime_id": 9, "name": "y"}])
    path.write_text(json.dumps({"iid_map_sha256": "a" * 64, "clusters": [old]}))
    assert clusters.taste_rows(path, "a" * 64)[0]["item_ids"] == [7, 9]
