"""A fresh clone's time to the first screen of the demo, and the demo's page speed in a real browser.

    python benchmarks/app.py --out artifacts/bench/app.json [--clicks 10] [--quick] [--venv PATH]

First screen (``first_screen_s``, target < 180 s on 2 cores): clones this repository's committed HEAD into a
temporary folder (uncommitted changes are not measured; the clone itself is not timed: a local clone, no
network) and runs there what a new user runs, ``make demo``: a venv and ``pip install`` of requirements.txt
(with ``PIP_NO_CACHE_DIR=1``, as on a machine that never installed them; the packages come from pip's configured
index, here a local one), the embedded sample prepared, the default model trained, ``streamlit run``. It records
when make started each step (setup, data, train, app: the recipe lines make prints), when the app first answered
HTTP (``/_stcore/health``), and ``first_screen_s``: from the start of ``make demo`` until the first page is drawn
completely in headless Chromium (started beforehand, as a user's browser is). Then ``git status --porcelain`` in
the clone lists what ``make demo`` left that git would show (there should be nothing).
``--venv PATH`` runs ``make demo`` with that existing venv instead (``make VENV=PATH``, its install taken as done,
the clone's code first on PYTHONPATH): setup is then not measured, and the JSON says so ("setup": "skipped").

Page speed, on the clone's server (the default model exactly as ``make demo`` trained it), timed inside the page
(performance.now, checked every animation frame) until the app's re-run is completely drawn:
- first render, cold: the first page of the freshly started server (Python imports, model load, first run);
- first render, warm: a new browser session on the running server (model and catalogue cached);
- update after a click: rating a title (the click on Rate -> new picks, recommendations, explanations,
  sections all redrawn), and switching the genre blend off and on (a change of α);
and reads the app's own server-side script time ("Page computed in N ms") after each click.

Needs python3.11 (the Makefile's PYTHON), /usr/bin/chromium and /usr/bin/chromedriver (make browser).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from harness import DemoPage, chromium, free_port, stop
from nostrade.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
FIRST_SCREEN_TARGET_S = 180.0
# make demo's steps, each recognised by the recipe line make prints when it starts it (see the Makefile)
STEPS = (("setup", "-m venv "), ("data", "make_processed_data.py"), ("train", "-m nostrade.train"),
         ("app", "streamlit run"))

TITLES = [("naruto", "Love"), ("shingeki", "Love"), ("death note", "Like"), ("one piece", "Love"),
          ("fullmetal", "Love"), ("code geass", "Like"), ("sword art", "Dislike"), ("steins", "Love"),
          ("toradora", "Like"), ("clannad", "Dislike"), ("bleach", "Like"), ("haikyuu", "Love")]


def step_seconds(lines: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Seconds of each step of make demo from (seconds since its start, line) of its output: a step lasts
    from the line that starts it to the line that starts the next one (the last one: to ``end``)."""
    starts = {}
    for name, marker in STEPS:
        starts[name] = next((t for t, line in lines if marker in line), None)
    seen = [(name, t) for name, t in starts.items() if t is not None]
    return {name: round((seen[i + 1][1] if i + 1 < len(seen) else end) - t, 2) for i, (name, t) in enumerate(seen)}


def clone(dest: Path) -> str:
    """A clone of this repository's committed HEAD at ``dest``; returns its commit."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO), str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "--quiet", commit], check=True)
    return commit


def make_demo(workdir: Path, port: int, venv: Path | None) -> tuple[subprocess.Popen, list, Path]:
    """Start ``make demo`` in ``workdir`` (its own process group; the app on 127.0.0.1:``port``); its output
    lines are collected with their time since the start by a reader thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOSTRADE_") and k != "PYTHONPATH"}
    env.update(STREAMLIT_SERVER_PORT=str(port), STREAMLIT_SERVER_ADDRESS="127.0.0.1",
               STREAMLIT_SERVER_HEADLESS="true", STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
               STREAMLIT_SERVER_FILE_WATCHER_TYPE="none", PIP_NO_CACHE_DIR="1")
    command = ["make", "demo"]
    if venv is not None:  # the given venv as if make setup had installed it; the clone's code, not the venv's
        command = ["make", f"VENV={venv}", "-o", f"{venv}/.installed", "demo"]
        env["PYTHONPATH"] = str(workdir / "code")
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=workdir, env=env, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []
    log = workdir.parent / "make-demo.log"

    def read():
        with open(log, "w") as out:
            for line in process.stdout:
                lines.append((time.monotonic() - started, line.rstrip()))
                out.write(line)
    threading.Thread(target=read, daemon=True).start()
    return process, lines, log


def answers_http(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_stcore/health", timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "max": max(values), "n": len(values), "all": values}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "artifacts" / "bench" / "app.json"))
    parser.add_argument("--clicks", type=int, default=10, help=f"titles rated (at most {len(TITLES)})")
    parser.add_argument("--quick", action="store_true", help="3 clicks (a smoke run)")
    parser.add_argument("--venv", type=Path, help="an existing venv for make demo (setup then not measured)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for the first screen")
    args = parser.parse_args(argv)
    clicks = min(3 if args.quick else args.clicks, len(TITLES))
    venv = args.venv.resolve() if args.venv else None
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nostrade-bench-app-") as tmp:
        workdir = Path(tmp) / "nostrade"
        commit = clone(workdir)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with chromium(Path(tmp) / "downloads") as driver:
            page = DemoPage(driver, timeout=180)
            started = time.monotonic()
            process, lines, log = make_demo(workdir, port, venv)
            try:
                while not answers_http(url):
                    if process.poll() is not None or time.monotonic() - started > args.timeout:
                        raise RuntimeError(f"make demo did not serve the app (exit status {process.poll()}):\n"
                                           + log.read_text()[-3000:])
                    time.sleep(0.2)
                http_s = time.monotonic() - started
                cold = page.open(f"{url}/?user=1000000001")
                first_screen = time.monotonic() - started
                steps = step_seconds(lines, http_s)
                if venv is not None:
                    steps = {"setup": "skipped", **steps}
                left = subprocess.run(["git", "status", "--porcelain"], cwd=workdir, check=True,
                                      capture_output=True, text=True).stdout.splitlines()
                warm = page.open(f"{url}/?user=1000000002")
                rate_s, server_ms = [], []
                for query, feedback in TITLES[:clicks]:
                    rate_s.append(page.rate(query, feedback))
                    server_ms.append(page.server_ms())
                blend_s = []
                for _ in range(2):
                    blend_s.append(page.toggle("blend"))
                    server_ms.append(page.server_ms())
            finally:
                stop(process)
        trained = next((line for _, line in lines if "wrote checkpoints/model.pt" in line), "")
    measured = ("fresh clone: make demo with a new venv and pip install (no pip cache)" if venv is None else
                f"make demo with the existing venv {venv} (setup skipped: NOT a fresh-clone figure)")
    result = {
        "first_screen_s": round(first_screen, 2), "first_screen_target_s": FIRST_SCREEN_TARGET_S,
        "first_screen": {"measured": measured, "commit": commit, "app_answers_http_s": round(http_s, 2),
                         "make_demo_steps_s": steps, "train_output": trained,
                         "git_status_after_make_demo": left},
        "first_render_cold_s": cold, "first_render_warm_s": warm,
        "rate_click_update_s": summary(rate_s), "alpha_change_update_s": summary(blend_s),
        "server_script_ms": summary(server_ms),
        "model": "checkpoints/model.pt as make demo trained it in the clone", "data": "data/processed (the clone's)",
        "machine": {"cpus": os.cpu_count(), "load_average_before": load_before,
                    "load_average_after": os.getloadavg(), "python": platform.python_version()},
        "note": "page timings inside the page until the re-run is completely drawn; a shared machine's load "
                "inflates every figure",
    }
    out = Path(args.out)
    write_json(out, result)
    print(f"first screen {first_screen:.1f} s after make demo ({measured}; steps {steps}; the app answered HTTP "
          f"at {http_s:.1f} s); git status after make demo: {left or 'clean'}")
    print(f"first render: cold {cold:.2f} s, warm {warm:.2f} s; update after rating a title: median "
          f"{result['rate_click_update_s']['median']:.2f} s (max {max(rate_s):.2f}); after changing alpha: median "
          f"{result['alpha_change_update_s']['median']:.2f} s; server script median "
          f"{result['server_script_ms']['median']:.0f} ms; load average {load_before[0]:.1f} on "
          f"{os.cpu_count()} CPUs; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
