"""Page speed of the Streamlit demo in a real browser (headless Chromium), on the embedded anime data.

    python benchmarks/app.py --out artifacts/bench/app.json [--clicks 10] [--quick]

Starts ``streamlit run code/app.py`` on a free 127.0.0.1 port (benchmarks/harness.py) and times, inside the
page (performance.now, checked every animation frame), until the app's re-run is completely drawn:
- first render, cold: the first page of a freshly started server (Python imports, model load, first run);
- first render, warm: a new browser session on the running server (model and catalogue cached);
- update after a click: rating a title (the click on Rate -> new picks, recommendations, explanations,
  sections all redrawn), and switching the genre blend off and on (a change of α);
and reads the app's own server-side script time ("Page computed in N ms") after each click.

Uses data/processed and checkpoints/model.pt when both exist (make train); otherwise it prepares the
embedded sample into a temporary folder and trains a 1-epoch stand-in of the default model size (page
speed does not depend on the weights). Needs /usr/bin/chromium and /usr/bin/chromedriver (make browser).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import DemoPage, chromium, serve_app
from nostrade import prep
from nostrade.atomic import write_json

REPO = Path(__file__).resolve().parents[1]

TITLES = [("naruto", "Love"), ("shingeki", "Love"), ("death note", "Like"), ("one piece", "Love"),
          ("fullmetal", "Love"), ("code geass", "Like"), ("sword art", "Dislike"), ("steins", "Love"),
          ("toradora", "Like"), ("clannad", "Dislike"), ("bleach", "Like"), ("haikyuu", "Love")]


def model_paths(workdir: Path) -> tuple[Path, Path, str]:
    data, checkpoint = REPO / "data" / "processed", REPO / "checkpoints" / "model.pt"
    if (data / "meta.json").exists() and checkpoint.exists():
        return data, checkpoint, "checkpoints/model.pt (make train)"
    data, checkpoint = workdir / "processed", workdir / "model.pt"
    prep.run(prep.PrepConfig(source="anime", out=data, artifacts=data))
    subprocess.run([sys.executable, "-m", "nostrade.train", "--data", str(data), "--out", str(checkpoint),
                    "--metrics", str(workdir / "metrics.json"), "--epochs", "1", "--no-progress"],
                   cwd=REPO, check=True)
    return data, checkpoint, "1-epoch stand-in of the default model size (no trained model found)"


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "max": max(values), "n": len(values), "all": values}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "artifacts" / "bench" / "app.json"))
    parser.add_argument("--clicks", type=int, default=10, help=f"titles rated (at most {len(TITLES)})")
    parser.add_argument("--quick", action="store_true", help="3 clicks (a smoke run)")
    args = parser.parse_args(argv)
    clicks = min(3 if args.quick else args.clicks, len(TITLES))
    with tempfile.TemporaryDirectory(prefix="nostrade-bench-app-") as tmp:
        workdir = Path(tmp)
        data, checkpoint, model = model_paths(workdir)
        env = {"NOSTRADE_DATA": str(data), "NOSTRADE_CHECKPOINT": str(checkpoint),
               "NOSTRADE_EVENTS": str(workdir / "events.db")}
        load_before = os.getloadavg()
        with serve_app(env) as url, chromium(workdir / "downloads") as driver:
            page = DemoPage(driver, timeout=180)
            cold = page.open(f"{url}/?user=1000000001")
            warm = page.open(f"{url}/?user=1000000002")
            rate_s, server_ms = [], []
            for query, feedback in TITLES[:clicks]:
                rate_s.append(page.rate(query, feedback))
                server_ms.append(page.server_ms())
            blend_s = []
            for _ in range(2):
                blend_s.append(page.toggle("blend"))
                server_ms.append(page.server_ms())
        result = {
            "first_render_cold_s": cold, "first_render_warm_s": warm,
            "rate_click_update_s": summary(rate_s), "alpha_change_update_s": summary(blend_s),
            "server_script_ms": summary(server_ms),
            "model": model, "data": str(data.relative_to(REPO)) if data.is_relative_to(REPO) else "temporary",
            "machine": {"cpus": os.cpu_count(), "load_average_before": load_before,
                        "load_average_after": os.getloadavg(), "python": platform.python_version()},
            "note": "timed inside the page until the re-run is completely drawn; a shared machine's load "
                    "inflates every figure",
        }
    out = Path(args.out)
    write_json(out, result)
    print(f"first render: cold {cold:.2f} s, warm {warm:.2f} s; update after rating a title: median "
          f"{result['rate_click_update_s']['median']:.2f} s (max {max(rate_s):.2f}); after changing alpha: median "
          f"{result['alpha_change_update_s']['median']:.2f} s; server script median "
          f"{result['server_script_ms']['median']:.0f} ms; load average {load_before[0]:.1f} on "
          f"{os.cpu_count()} CPUs; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
