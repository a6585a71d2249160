"""The library's layers (.importlinter): arrows only downwards, every module in one layer, each importable first."""
import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / ".importlinter"
PACKAGE = REPO / "code" / "nostrade"
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")


def lint_imports(code_folder: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LINT, str(CONFIG)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(code_folder)}, timeout=120)


def modules() -> list[str]:
    """Every module of the nostrade package, by its dotted name."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def layers() -> list[list[str]]:
    config = configparser.ConfigParser()
    config.read(CONFIG)
    lines = config["importlinter:contract:layers"]["layers"].strip().splitlines()
    return [[name.strip() for name in line.replace("|", ":").split(":")] for line in lines]


def test_the_import_contract_is_kept():
    done = lint_imports(REPO / "code", REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def test_the_contract_refuses_an_import_upwards(tmp_path):
    """The checkpoint reader importing the registry (the cycle issue 29 removed) breaks the contract."""
    shutil.copytree(PACKAGE, tmp_path / "nostrade", ignore=shutil.ignore_patterns("__pycache__"))
    checkpoint = tmp_path / "nostrade" / "checkpoint.py"
    checkpoint.write_text(checkpoint.read_text() + "\nfrom nostrade import registry  # noqa\n")
    done = lint_imports(tmp_path, tmp_path)
    assert done.returncode != 0 and "nostrade.checkpoint -> nostrade.registry" in done.stdout, done.stdout[-3000:]


def test_every_module_is_in_exactly_one_layer():
    named = [name for layer in layers() for name in layer]
    assert len(named) == len(set(named)), "a module named in two layers"
    homeless = [m for m in modules() if m != "nostrade" and not any(m == n or m.startswith(n + ".") for n in named)]
    assert not homeless, f"modules in no layer of {CONFIG.name}: {homeless}"
    assert not set(named) - set(modules()), "a layer names a module that does not exist"


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported before any other of the package (one interpreter, the package forgotten between
    imports): no import cycle that only an import order hides."""
    script = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "nostrade" or m.startswith("nostrade.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=3))
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""
    done = subprocess.run([sys.executable, "-c", script, *modules()], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO / "code"), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
