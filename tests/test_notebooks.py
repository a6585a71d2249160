"""Both notebooks run top to bottom with their small-data parameter (so they cannot rot), and are committed
as `make notebooks` saved them: run on the embedded data, every output there, the figures small PNGs."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_sasrec_feedback_demo.ipynb", "02_eval_ablation.ipynb"]
MAX_PNG_BYTES = 150_000  # base64 characters of one figure (about 110 kB of PNG)


def run_small(path: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Execute ``path`` with ``SMALL = True`` injected after its "parameters" cell (as papermill does)."""
    nb = nbformat.read(path, as_version=4)
    at = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("SMALL = True\nTHREADS = 1"))
    # importing streamlit (the app tests) sets MPLBACKEND=Agg for the process; a kernel inheriting it shows no plots
    monkeypatch.delenv("MPLBACKEND", raising=False)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def plots_shown(nb: nbformat.NotebookNode) -> list[list[str]]:
    """The PNGs (base64) shown by each cell that calls plt.show(); asserts there is at least one such cell."""
    plotting = [cell for cell in nb.cells if cell.cell_type == "code" and "plt.show()" in cell.source]
    assert plotting
    return [[o["data"]["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})] for cell in plotting]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_with_small_data(name, monkeypatch):
    executed = run_small(NOTEBOOKS / name, monkeypatch)
    assert all(plots_shown(executed)), f"{name}: a cell that draws a plot showed none"


@pytest.mark.parametrize("name", NAMES)
def test_the_committed_notebook_holds_its_full_run_with_small_figures(name):
    committed = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [cell for cell in committed.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), \
        f"{name}: not saved by one run top to bottom (make notebooks)"
    assert not any(o.get("output_type") == "error" for cell in code for o in cell.outputs)
    assert not any("\r" in o.get("text", "") for cell in code for o in cell.outputs), \
        f"{name}: progress bars saved with every update (make notebooks keeps the last)"
    assert not any("SMALL = True" in cell.source for cell in code), f"{name}: saved from a SMALL run"
    figures = plots_shown(committed)
    assert all(figures), f"{name}: a cell that draws a plot was saved without its figure"
    assert max(len(png) for cell in figures for png in cell) < MAX_PNG_BYTES, f"{name}: a figure is not small"
