"""Functions a reader can hold: none in code/ over MAX_LINES lines (issue 29)."""
import ast
from pathlib import Path

import pytest

CODE = Path(__file__).resolve().parents[1] / "code"
MAX_LINES = 80


def long_functions(folder: Path, max_lines: int) -> list[str]:
    """'path:line name (n lines)' of every function or method longer than max_lines, decorators not counted."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n_lines = node.end_lineno - node.lineno + 1
                if n_lines > max_lines:
                    found.append(f"{path.relative_to(folder.parent)}:{node.lineno} {node.name} ({n_lines} lines)")
    return found


def test_no_function_in_code_is_over_80_lines():
    assert long_functions(CODE, MAX_LINES) == []


@pytest.mark.parametrize("body_lines, found", [(MAX_LINES - 1, False), (MAX_LINES, True)])
def test_the_check_counts_a_function_from_its_def_to_its_last_line(tmp_path, body_lines, found):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "m.py").write_text("@staticmethod\ndef f():\n" + "    x = 1\n" * body_lines)
    assert bool(long_functions(tmp_path / "code", MAX_LINES)) is found
