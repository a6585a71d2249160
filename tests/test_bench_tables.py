"""benchmarks/tables.py: the results tables of README.md and docs/results.md come from the result files."""
import pytest
import tables


def test_render_fills_every_block_and_leaves_the_rest():
    readme = "intro\n<!-- generated: a -->\nold\n<!-- /generated -->\nmiddle\n<!-- generated: b -->\n<!-- /generated -->\n"
    out = tables.render(readme, {"a": "A\n", "b": "B\n"})
    assert out == "intro\n<!-- generated: a -->\nA\n<!-- /generated -->\nmiddle\n<!-- generated: b -->\nB\n<!-- /generated -->\n"
    with pytest.raises(ValueError, match="docs/x.md: unknown generated block 'c'"):
        tables.render("<!-- generated: c -->\n<!-- /generated -->", {"a": ""}, "docs/x.md")


def blocks_in(page) -> set[str]:
    return {m["name"] for m in tables.BLOCK.finditer(page.read_text())}


def test_the_pages_hold_exactly_what_the_result_files_say():
    assert tables.main(["--check"]) == 0
    readme, results = tables.PAGES
    assert blocks_in(readme) == {"served-ml100k"}  # the front page's one results table
    assert {"served-ml100k", "served-anime", "lifts-ml100k", "lifts-anime"} <= blocks_in(results)


@pytest.mark.parametrize("page", tables.PAGES, ids=lambda p: p.name)
def test_a_hand_edit_is_caught_on_every_page(tmp_path, page, capsys):
    edited = tmp_path / page.name
    edited.write_text(page.read_text().replace("| served:ease |", "| served:ease (edited) |", 1))
    assert edited.read_text() != page.read_text()
    assert tables.main(["--check", "--pages", str(page), str(edited)]) == 1
    assert capsys.readouterr().err.strip() == f"{edited}: generated tables differ from the result files; run python benchmarks/tables.py"


def test_a_file_the_pipeline_wrote_is_noted_with_its_stage():
    record = {"command": "python benchmarks/ablation.py --data data/sample --stage ablation-anime",
              "config": {"seeds": [0, 1, 2]}}
    assert tables.file_note("anime.json", record) == (
        "(`artifacts/results/anime.json`, written by `python benchmarks/ablation.py --data data/sample --stage "
        "ablation-anime`; seeds [0, 1, 2])")
    assert tables.file_note("anime.json", {**record, "stage": "ablation-anime"}).startswith(
        "(`artifacts/results/anime.json`, written by `dvc repro ablation-anime`, which ran `python benchmarks/")
