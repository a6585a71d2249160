"""benchmarks/tables.py: the README's results tables come from the result files."""
import pytest
import tables


def test_render_fills_every_block_and_leaves_the_rest():
    readme = "intro\n<!-- generated: a -->\nold\n<!-- /generated -->\nmiddle\n<!-- generated: b -->\n<!-- /generated -->\n"
    out = tables.render(readme, {"a": "A\n", "b": "B\n"})
    assert out == "intro\n<!-- generated: a -->\nA\n<!-- /generated -->\nmiddle\n<!-- generated: b -->\nB\n<!-- /generated -->\n"
    with pytest.raises(ValueError, match="unknown generated block 'c'"):
        tables.render("<!-- generated: c -->\n<!-- /generated -->", {"a": ""})


def test_the_readme_holds_exactly_what_the_result_files_say():
    assert tables.main(["--check"]) == 0
    assert {"served-ml100k", "served-anime", "lifts-ml100k", "lifts-anime"} <= set(
        m["name"] for m in tables.BLOCK.finditer(tables.REPO.joinpath("README.md").read_text()))


def test_a_hand_edit_is_caught(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(tables.REPO.joinpath("README.md").read_text().replace("| served:ease |", "| served:ease (edited) |", 1))
    assert tables.main(["--check", "--readme", str(readme)]) == 1
