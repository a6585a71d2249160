"""Benchmark make_processed_data.py on a synthetic set the size of the full Kaggle anime rating.csv.

73,515 users, 11,200 items, ~7.8M ratings (anime format + timestamps). Each repeat runs the real CLI
in a fresh process (imports included) and reads that process's wall time and peak RSS (wait4);
a last in-process run breaks the time down by stage (read, build, write). Targets: < 10 s wall, < 3 GB peak RSS.
Prints medians and writes artifacts/bench/prep.json.

    python benchmarks/prep.py            # full size, 3 repeats
    python benchmarks/prep.py --quick    # small smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nostrade import prep
from nostrade.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
# The generator drops repeated (user, item) draws, so ask for 1.4% more to land near 7.8M rows.
FULL = dict(n_users=73_515, n_items=11_200, interactions_per_user=7_813_737 / 73_515 * 1.014)
QUICK = dict(n_users=2_000, n_items=500, interactions_per_user=50)


def run_cli(items: Path, ratings: Path, out: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system, all threads) and peak RSS (bytes) of one CLI run
    in a fresh process."""
    cmd = [sys.executable, str(REPO / "make_processed_data.py"), "--source", "anime", "--items", str(items),
           "--ratings", str(ratings), "--out", str(out), "--artifacts", str(out), "--quiet"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark run failed: {' '.join(cmd)}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024  # Linux reports KiB


def stage_times(items: Path, ratings: Path, out: Path) -> dict[str, float]:
    cfg = prep.PrepConfig(source="anime", items=items, ratings=ratings, out=out, artifacts=out)
    t0 = time.perf_counter()
    raw = prep.load_raw(cfg)
    t1 = time.perf_counter()
    processed = prep.build(raw, cfg)
    t2 = time.perf_counter()
    prep.write(processed, out, out)
    t3 = time.perf_counter()
    return {"read_s": t1 - t0, "build_s": t2 - t1, "write_s": t3 - t2}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small smoke run (2,000 users)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="where to write the figures (default: artifacts/bench/prep.json, "
                                            "or prep_quick.json with --quick)")
    args = p.parse_args()
    args.out = args.out or REPO / "artifacts" / "bench" / ("prep_quick.json" if args.quick else "prep.json")
    size = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="nostrade-bench-prep-"))
    try:
        # Generate in a separate process: a child forked from a big parent would inherit its peak RSS.
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import json, sys; from nostrade.synthetic import SyntheticConfig, "
                        "write_synthetic; write_synthetic(SyntheticConfig(**json.loads(sys.argv[1])), sys.argv[2])",
                        json.dumps({**size, "seed": args.seed}), str(work / "raw")], check=True)
        items, ratings = work / "raw" / "anime.csv", work / "raw" / "rating.csv"
        generate_s = time.perf_counter() - t
        n_rows = sum(1 for _ in open(ratings, "rb")) - 1
        print(f"generated {n_rows:,} ratings, {size['n_users']:,} users, {size['n_items']:,} items "
              f"in {generate_s:.1f} s ({ratings.stat().st_size / 1e6:.0f} MB csv)")
        walls, cpus, peaks, loads = [], [], [], []
        for k in range(args.repeats):
            loads.append(os.getloadavg()[0])
            wall, cpu, peak = run_cli(items, ratings, work / "processed")
            walls.append(wall)
            cpus.append(cpu)
            peaks.append(peak)
            print(f"run {k + 1}: {wall:.2f} s wall, {cpu:.2f} s CPU, {n_rows / wall / 1e6:.2f} M rows/s, "
                  f"peak RSS {peak / 2**30:.2f} GiB (load average before: {loads[-1]:.1f})")
        stages = stage_times(items, ratings, work / "processed")
        meta = json.loads((work / "processed" / "meta.json").read_text())
        result = {
            "rows": n_rows, "n_users_out": meta["n_users"], "n_items_out": meta["n_items"],
            "n_interactions_out": meta["n_interactions"], "repeats": args.repeats,
            "wall_s_median": float(np.median(walls)), "wall_s_all": walls,
            "rows_per_s_median": float(n_rows / np.median(walls)),
            "cpu_s_median": float(np.median(cpus)), "cpu_s_all": cpus, "load_average_before_runs": loads,
            "peak_rss_gib_median": float(np.median(peaks) / 2**30), "peak_rss_gib_max": float(max(peaks) / 2**30),
            "in_process_stages_s": stages, "quick": args.quick,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "note": ("CLI wall time in a fresh process, imports included; CPU = user + system over all threads. "
                     "On a shared machine (load average above the core count) wall time includes waiting."),
        }
        print(f"median: {result['wall_s_median']:.2f} s wall (target < 10), {result['cpu_s_median']:.2f} s CPU, "
              f"{result['rows_per_s_median'] / 1e6:.2f} M rows/s, peak RSS {result['peak_rss_gib_median']:.2f} GiB "
              f"(target < 3); in-process stages: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
        write_json(args.out, result)
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
