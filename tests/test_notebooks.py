"""Both notebooks run top to bottom with their small-data parameter (so they cannot rot)."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_small(path: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Execute ``path`` with ``SMALL = True`` injected after its "parameters" cell (as papermill does)."""
    nb = nbformat.read(path, as_version=4)
    at = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("SMALL = True\nTHREADS = 1"))
    # importing streamlit (the app tests) sets MPLBACKEND=Agg for the process; a kernel inheriting it shows no plots
    monkeypatch.delenv("MPLBACKEND", raising=False)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


@pytest.mark.parametrize("name", ["01_sasrec_feedback_demo.ipynb", "02_eval_ablation.ipynb"])
def test_notebook_runs_with_small_data(name, monkeypatch):
    committed = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not cell.get("outputs") for cell in committed.cells if cell.cell_type == "code"), \
        f"{name}: commit it with outputs cleared"
    executed = run_small(NOTEBOOKS / name, monkeypatch)
    plotting = [cell for cell in executed.cells if cell.cell_type == "code" and "plt.show()" in cell.source]
    assert plotting and all(any("image/png" in o.get("data", {}) for o in cell.outputs) for cell in plotting), \
        f"{name}: a cell that draws a plot showed none"
