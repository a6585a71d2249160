"""benchmarks/app.py: the steps of make demo, timed from the recipe lines make prints."""
import importlib.util
import json
import re
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# loaded by path: "app" is also the Streamlit demo's module name (code/app.py)
spec = importlib.util.spec_from_file_location("bench_app", BENCHMARKS / "app.py")
bench_app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_app)


def test_each_step_lasts_until_the_next_one_starts():
    lines = [(0.0, "python3.11 -m venv .venv"), (0.2, ".venv/bin/python -m pip install --quiet -r requirements.txt"),
             (60.0, ".venv/bin/python make_processed_data.py"), (60.5, "users 956  items 2,000"),
             (62.5, ".venv/bin/python -m nostrade.train --data data/processed --out checkpoints/model.pt"),
             (70.0, ".venv/bin/streamlit run code/app.py")]
    assert bench_app.step_seconds(lines, 71.0) == {"setup": 60.0, "data": 2.5, "train": 7.5, "app": 1.0}
    assert bench_app.step_seconds(lines[2:], 71.0) == {"data": 2.5, "train": 7.5, "app": 1.0}  # an existing venv


def test_every_step_marker_is_a_recipe_line_of_the_makefile():
    recipes = [line.strip() for line in (BENCHMARKS.parent / "Makefile").read_text().splitlines()
               if line.startswith("\t")]
    for step, marker in bench_app.STEPS:
        assert sum(marker in line for line in recipes) == 1, f"{step}: {marker!r} is not one recipe line"


def test_make_demo_in_a_clone_serves_the_app_and_leaves_nothing_for_git(tmp_path):
    """The benchmark end to end on this venv (--venv: no pip install), 3 clicks: make demo in a clone of HEAD
    prepares, trains and serves, and afterwards git status in the clone is empty (every output is ignored)."""
    out = tmp_path / "app.json"
    assert bench_app.main(["--venv", sys.prefix, "--quick", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    first = record["first_screen"]
    assert first["git_status_after_make_demo"] == []
    assert first["make_demo_steps_s"]["setup"] == "skipped" and "NOT a fresh-clone figure" in first["measured"]
    assert set(first["make_demo_steps_s"]) == {"setup", "data", "train", "app"}
    assert re.search(r"auto chose (ease|ranker): \1 .*fitted in", first["train_output"])  # and what it chose
    assert 0 < first["app_answers_http_s"] < record["first_screen_s"] and record["rate_click_update_s"]["n"] == 3
