"""make_processed_data.py on the shipped sample with one bad rating, run again and again: the exit status of each.

Issue 30, item 7: the CLI printed the right one-line error but then aborted with exit 134 ("terminate called
without an active exception") in about 1 run of 4. Each run is a fresh process; the bad value ('nan' or '11')
sits in the middle of the 97k-line sample so that pyarrow's multi-threaded reader is busy around it.
Writes artifacts/bench/prep_bad_rating.json.

    python benchmarks/prep_bad_rating.py --runs 20
"""
from __future__ import annotations

import argparse
import collections
import gzip
import subprocess
import sys
import tempfile
from pathlib import Path

from nostrade.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


def bad_copy(folder: Path, value: str) -> Path:
    lines = gzip.decompress((SAMPLE / "rating_sample.csv.gz").read_bytes()).split(b"\n")
    middle = len(lines) // 2
    lines.insert(middle, lines[middle].rsplit(b",", 1)[0] + b"," + value.encode())
    path = folder / f"rating_{value}.csv"
    path.write_bytes(b"\n".join(lines))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs per bad value (default 20)")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench" / "prep_bad_rating.json")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for value in ("nan", "11"):
            ratings = bad_copy(Path(tmp), value)
            cmd = [sys.executable, str(REPO / "make_processed_data.py"), "--items", str(SAMPLE / "anime.csv.gz"),
                   "--ratings", str(ratings), "--out", f"{tmp}/out", "--artifacts", f"{tmp}/art", "--quiet"]
            runs = [subprocess.run(cmd, capture_output=True, text=True) for _ in range(args.runs)]
            statuses = collections.Counter(run.returncode for run in runs)
            results[value] = {"runs": args.runs, "exit_statuses": {str(k): v for k, v in sorted(statuses.items())},
                              "stderr_last_lines": sorted({run.stderr.strip().splitlines()[-1] for run in runs})}
            print(f"rating {value!r}: exit statuses {dict(statuses)}; {results[value]['stderr_last_lines']}")
    write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0 if all(r["exit_statuses"] == {"2": r["runs"]} for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
