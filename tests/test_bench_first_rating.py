"""benchmarks/first_rating.py: histories cut to n liked titles, both serving paths measured on them."""
import json

import numpy as np

import first_rating
from nostrade.sequences import DISLIKE, LIKE, LOVE, Sequences
from nostrade.split import EvalCases


def test_cut_keeps_n_liked_titles_of_each_history_in_their_order():
    history = Sequences.from_lists([[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]],
                                   [[LIKE, DISLIKE, LOVE, LIKE, DISLIKE], [DISLIKE, LIKE], [LOVE, LOVE, LIKE]])
    cases = EvalCases(np.array([10, 11, 12]), history, np.array([20, 21, 22]), np.array([LIKE, LIKE, LOVE]))
    cut = first_rating.cut_cases(cases, 2, seed=0)
    assert cut.users.tolist() == [10, 12] and cut.target.tolist() == [20, 22]  # user 11 has one liked title only
    for row, allowed in zip(range(cut.history.n_users), ({1, 3, 4}, {8, 9, 10})):
        iid = cut.history.take([row]).iid.tolist()
        assert len(iid) == 2 and set(iid) <= allowed and iid == sorted(iid)  # liked ones, original order
        assert (cut.history.take([row]).feedback != DISLIKE).all()
    draws = {tuple(first_rating.cut_cases(cases, 1, seed=s).history.iid) for s in range(12)}
    assert len(draws) > 1  # a seeded random draw, not always the first
    assert first_rating.cut_cases(cases, 1, seed=3).history.iid.tolist() == \
        first_rating.cut_cases(cases, 1, seed=3).history.iid.tolist()


def test_both_paths_are_measured_and_the_better_one_named(processed_sample, tmp_path, capsys):
    out = tmp_path / "first_rating.json"
    assert first_rating.main(["--data", str(processed_sample), "--out", str(out), "--sizes", "1,2",
                              "--seeds", "0"]) == 0
    record = json.loads(out.read_text())
    for size in ("1", "2"):
        cell = record["rows"]["ease"][size]
        assert cell["n_cases"] > 100 and set(first_rating.PATHS) <= set(cell)
        assert cell["better"] == max(first_rating.PATHS, key=lambda p: cell[p]["ndcg@10"])
        assert cell["model"]["ndcg@10"] != cell["cold_start"]["ndcg@10"]  # two different paths, really
    assert first_rating.main(["--data", str(processed_sample), "--out", str(out), "--sizes", "0"]) == 2
    assert "--sizes" in capsys.readouterr().err
