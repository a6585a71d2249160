"""dvc.yaml and params.yaml hold together, checked without DVC: every parameter a stage uses exists and is tracked,
every dependency is in the repository or an output of an earlier stage, every command's script exists, and the
large outputs stay out of git."""
import copy
import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PARAM = re.compile(r"\$\{([\w.-]+)\}")
STAGES = ["prep", "train", "evaluate", "ablation-anime", "ablation-ml100k", "tables", "notebooks"]
LARGE = ("data/processed", "checkpoints/model.pt")  # outputs that must stay out of git


def load() -> tuple[dict, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text()), yaml.safe_load((REPO / "params.yaml").read_text())


def lookup(params: dict, key: str):
    value = params
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def paths(entries: list) -> list[str]:
    """The paths of a deps/outs/metrics list (a plain string, or a one-key dict with its options)."""
    return [e if isinstance(e, str) else next(iter(e)) for e in entries or []]


def options(entries: list) -> list[dict]:
    return [{} if isinstance(e, str) else next(iter(e.values())) or {} for e in entries or []]


def outputs(stage: dict) -> list[str]:
    return paths(stage.get("outs")) + paths(stage.get("metrics"))


def param_problems(name: str, stage: dict, params: dict) -> list[str]:
    tracked = stage.get("params") or []
    problems = [f"{name}: params.yaml has no {key}" for key in tracked if not _has(params, key)]
    for key in PARAM.findall(yaml.safe_dump(stage)):
        if not _has(params, key):
            problems.append(f"{name}: ${{{key}}} is not in params.yaml")
        elif not any(key == t or key.startswith(t + ".") for t in tracked):
            problems.append(f"{name}: uses {key} without listing it under params")
    return problems


def _has(params: dict, key: str) -> bool:
    try:
        lookup(params, key)
        return True
    except KeyError:
        return False


def dependency_problems(name: str, stage: dict, earlier_outputs: set[str], exists) -> list[str]:
    problems = []
    for dep in paths(stage.get("deps")):
        if PARAM.fullmatch(dep):
            continue  # data read in place from a path params.yaml names (ML-100K: never committed)
        if not (exists(dep) or any(dep == out or dep.startswith(out + "/") for out in earlier_outputs)):
            problems.append(f"{name}: dependency {dep} is neither in the repository nor an earlier stage's output")
    return problems


def problems_of(pipeline: dict, params: dict, exists=lambda p: (REPO / p).exists()) -> list[str]:
    found, earlier = [], set()
    for name, stage in pipeline["stages"].items():
        found += param_problems(name, stage, params) + dependency_problems(name, stage, earlier, exists)
        found += [f"{name}: output {out} is cached (the pipeline keeps no DVC cache)"
                  for out, opts in zip(outputs(stage), options(stage.get("outs")) + options(stage.get("metrics")))
                  if opts.get("cache", True)]
        earlier |= set(outputs(stage))
    return found


def test_the_pipeline_holds_together():
    pipeline, params = load()
    assert list(pipeline["stages"]) == STAGES
    assert problems_of(pipeline, params) == []


def test_a_broken_pipeline_is_caught():
    pipeline, params = load()
    broken = copy.deepcopy(pipeline)
    broken["stages"]["train"]["deps"].append("data/nowhere")
    broken["stages"]["train"]["cmd"] += " --epochs ${train.epochs}"
    broken["stages"]["evaluate"]["params"] = ["evaluate.k"]
    broken["stages"]["ablation-anime"]["params"].remove("ablation.seeds")
    broken["stages"]["prep"]["outs"][0]["data/processed"]["cache"] = True
    reordered = {"stages": {"evaluate": pipeline["stages"]["evaluate"], **pipeline["stages"]}}
    assert problems_of(broken, params) == [
        "prep: output data/processed is cached (the pipeline keeps no DVC cache)",
        "train: ${train.epochs} is not in params.yaml",
        "train: dependency data/nowhere is neither in the repository nor an earlier stage's output",
        "evaluate: params.yaml has no evaluate.k",
        "ablation-anime: uses ablation.seeds without listing it under params",
    ]
    assert "evaluate: dependency checkpoints/model.pt is neither in the repository nor an earlier stage's output" in (
        problems_of(reordered, params, exists=lambda p: False))


@pytest.mark.parametrize("name", STAGES)
def test_each_command_runs_a_script_that_exists(name):
    stage = load()[0]["stages"][name]
    words = stage["cmd"].split()
    if words[0] == "make":
        assert re.search(rf"^{re.escape(words[1])}:", (REPO / "Makefile").read_text(), re.M)
    elif words[1] == "-m":
        assert importlib.util.find_spec(words[2]) is not None
    else:
        assert (REPO / words[1]).is_file() and words[1] in paths(stage["deps"])  # a changed script reruns it


def test_every_ablation_stage_names_itself_in_its_result_files():
    for name, stage in load()[0]["stages"].items():
        if "benchmarks/ablation.py" in stage["cmd"]:
            assert stage["cmd"].split()[-2:] == ["--stage", name]


def test_the_committed_result_files_are_what_their_stage_ran():
    """Each ablation's result file holds one run of its stage's command at today's parameters (no --update chain)."""
    pipeline, params = load()
    for name, stage in pipeline["stages"].items():
        if "benchmarks/ablation.py" not in stage["cmd"]:
            continue
        command = PARAM.sub(lambda m: str(lookup(params, m.group(1))), " ".join(stage["cmd"].split()))
        result = json.loads((REPO / paths(stage["metrics"])[0]).read_text())
        assert (result.get("stage"), result["command"], result.get("updates")) == (name, command, None)


def test_the_large_outputs_stay_out_of_git():
    pipeline = load()[0]
    outs = {out for stage in pipeline["stages"].values() for out in outputs(stage)}
    assert set(LARGE) <= outs
    ignored = subprocess.run(["git", "check-ignore", *LARGE], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == list(LARGE)


def test_bytecode_is_no_change_of_the_code():
    """Python's __pycache__ beside code/nostrade would otherwise change the directory's hash and rerun every stage."""
    assert {"__pycache__/", "*.pyc"} <= set((REPO / ".dvcignore").read_text().split())
