"""Load test of the HTTP service: POST /recommend with 50-event histories, 1 and then 2 uvicorn workers.

    python benchmarks/load.py --out artifacts/bench/api_load.json [--requests 2000] [--concurrency 4 8] [--rows ...]
    python benchmarks/load.py --out FILE.json --checkpoint checkpoints/model.pt --data data/processed

Without --checkpoint it serves what is served: the default model of the embedded sample (checkpoints/model.pt on
data/processed, prepared and trained first where absent, as `make train`: --model auto's choice, its kind in the
JSON), the headline; then labelled extra rows (``--rows``): ``ranker`` (checkpoints/ranker.pt, trained where
absent) and ``sasrec-set`` / ``sasrec-time`` (random-weight SASRecs of the default config for the sample, as for
data whose order is not / is time, saved with nostrade.checkpoint: latency does not depend on the weights). The
full 12,294-title catalogue is served (the file recorded in the processed folder's meta.json).

For each worker count it starts `uvicorn api:app` on a free 127.0.0.1 port (harness.ServerProcess), waits
until every worker answers, sends --warmup unmeasured requests, then --requests POST /recommend
(k=20, explanations on), each with the last 50 events of a real user of the sample (users with at least
50), from an async httpx client with at most --concurrency requests in flight, stopping at --time-cap
seconds; then stops the server. Writes, per (worker count, concurrency), {"rps", "p50_ms", "p99_ms", "errors",
...} under "runs", and at the top level the figures of the most workers at the lowest concurrency
(latency = client-side, request sent to response read; errors = non-200 answers, failed requests and
requests not sent before the time cap). The client shares the machine's cores with the server: on a
2-core machine it costs the server part of a core. Each worker scores the requests in flight together
(code/batching.py): --microbatch-max 1 measures one model call per request, as before micro-batching.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import torch

import served
from harness import ServerProcess
from nostrade.atomic import write_json
from nostrade.checkpoint import read_checkpoint
from nostrade.dataset import load_dataset

REPO = Path(__file__).resolve().parents[1]

HISTORY_LENGTH = 50
ROWS = ("served", "ranker", "sasrec-set", "sasrec-time")


def request_bodies(data_dir: Path, n: int, seed: int) -> list[bytes]:
    """n POST /recommend JSON bodies: the last HISTORY_LENGTH events of real users, drawn with replacement
    (encoded once here, so that the client spends its time on HTTP)."""
    data = load_dataset(data_dir)
    seqs = data.sequences
    item_of_iid = np.concatenate([[0], data.items["item_id"].to_numpy()])
    long_enough = np.flatnonzero(seqs.lengths >= HISTORY_LENGTH)
    if not len(long_enough):
        raise SystemExit(f"{data_dir}: no user has {HISTORY_LENGTH} events")
    last = seqs.take(long_enough).last(HISTORY_LENGTH)
    rows = np.random.default_rng(seed).choice(len(long_enough), n)
    bodies = []
    for row in rows:
        span = slice(last.offsets[row], last.offsets[row + 1])
        history = [{"item_id": int(a), "feedback": int(f)}
                   for a, f in zip(item_of_iid[last.iid[span]], last.feedback[span])]
        bodies.append(json.dumps({"history": history, "k": 20}).encode())
    return bodies


async def send_all(url: str, bodies: list[bytes], concurrency: int, time_cap_s: float) -> tuple[list[float], int, float]:
    """(latencies in seconds of the 200 answers, number of errors, wall seconds)."""
    gate = asyncio.Semaphore(concurrency)
    latencies, errors = [], 0
    start = time.perf_counter()
    deadline = start + time_cap_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0, headers=headers) as client:
        async def one(body: bytes) -> None:
            nonlocal errors
            async with gate:
                if time.perf_counter() > deadline:
                    errors += 1  # not sent within the time cap
                    return
                sent = time.perf_counter()
                try:
                    response = await client.post("/recommend", content=body)
                    ok = response.status_code == 200 and b'"items":[{' in response.content  # a non-empty top-k
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors += 1

        await asyncio.gather(*(one(b) for b in bodies))
    return latencies, errors, time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (the uvicorn workers)."""
    root = psutil.Process(pid)
    return sum(p.cpu_times().user + p.cpu_times().system for p in [root, *root.children(recursive=True)])


def scoring_counts(url: str, workers: int) -> dict[int, np.ndarray]:
    """Per worker pid, (requests scored, model calls), from its /health (asked until every worker answered once:
    the server picks which one answers)."""
    counts = {}
    for _ in range(50 * workers):
        health = httpx.get(url + "/health", timeout=5.0).json()
        counts[health["pid"]] = np.array([health["scored_requests"], health["scoring_calls"]], dtype=np.int64)
        if len(counts) == workers:
            break
    return counts


def measure(env: dict, workers: int, bodies: list[bytes], warmup: list[bytes], concurrency: int,
            time_cap_s: float, reuse_port: bool = False) -> dict:
    with ServerProcess(env, workers=workers, reuse_port=reuse_port) as server:
        asyncio.run(send_all(server.url, warmup, concurrency, time_cap_s))
        load_before, scored = os.getloadavg()[0], scoring_counts(server.url, workers)
        server_cpu, client_cpu = cpu_seconds(server.process.pid), time.process_time()
        latencies, errors, wall = asyncio.run(send_all(server.url, bodies, concurrency, time_cap_s))
        server_cpu, client_cpu = cpu_seconds(server.process.pid) - server_cpu, time.process_time() - client_cpu
        after = scoring_counts(server.url, workers)
        scored = np.array([after[pid] - scored.get(pid, 0) for pid in after])  # (workers, 2) during the run
    ms = np.array(latencies) * 1000
    answered = max(len(latencies), 1)
    return {"concurrency": concurrency, "rps": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
            "errors": errors, "ok": len(latencies), "requests": len(bodies), "wall_s": round(wall, 2),
            "load_avg_1min_before": round(load_before, 2),
            "mean_micro_batch": round(float(scored[:, 0].sum() / max(scored[:, 1].sum(), 1)), 2),  # per model call
            "busiest_worker_share": round(float(scored[:, 0].max() / max(scored[:, 0].sum(), 1)), 3),
            # CPU time per answered request: what the figures would be on quiet cores, whatever else runs
            "server_cpu_ms_per_request": round(1000 * server_cpu / answered, 2),
            "client_cpu_ms_per_request": round(1000 * client_cpu / answered, 2)}


def row_model(row: str, args: argparse.Namespace, tmp: Path) -> tuple[Path, Path]:
    """(checkpoint, processed folder) of a row."""
    if args.checkpoint is not None:
        return args.checkpoint.resolve(), args.data.resolve()
    if row == "served":
        return served.default_model()
    if row == "ranker":
        return served.ranker_model()
    data = served.processed()
    return served.random_sasrec(tmp / f"{row}.pt", data, row == "sasrec-time"), data


def load_runs(checkpoint: Path, data_dir: Path, tmp: Path, args: argparse.Namespace) -> dict:
    """Every (worker count, concurrency) run serving one checkpoint."""
    env = {"NOSTRADE_CHECKPOINT": str(checkpoint), "NOSTRADE_DATA": str(data_dir),
           "NOSTRADE_EVENTS": str(tmp / "events.db"), "NOSTRADE_THREADS": "1"}
    for name, value in (("NOSTRADE_MICROBATCH_MAX", args.microbatch_max),
                        ("NOSTRADE_MICROBATCH_WAIT_MS", args.microbatch_wait_ms)):
        if value is not None:  # else the server's default (code/batching.py)
            env[name] = str(value)
    bodies = request_bodies(data_dir, args.requests + args.warmup, args.seed)
    warmup, bodies = bodies[:args.warmup], bodies[args.warmup:]
    runs = []
    for workers in args.workers:
        for concurrency in args.concurrency:
            print(f"  {workers} worker(s): {len(bodies)} requests, concurrency {concurrency}, micro-batches of at most "
                  f"{args.microbatch_max or 'the default'} (waiting at most {args.microbatch_wait_ms or 'the default'} "
                  "ms)…", flush=True)
            r = {"workers": workers,
                 **measure(env, workers, bodies, warmup, concurrency, args.time_cap, args.reuse_port)}
            runs.append(r)
            print(f"    {r['rps']:.1f} req/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  errors {r['errors']}  "
                  f"(CPU per request: server {r['server_cpu_ms_per_request']} ms, client "
                  f"{r['client_cpu_ms_per_request']} ms; {r['mean_micro_batch']} requests per model call; "
                  f"busiest worker {r['busiest_worker_share']:.0%} of them; 1-min load average "
                  f"{r['load_avg_1min_before']})", flush=True)
    return {"checkpoint": str(checkpoint), "runs": runs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="JSON results file (written atomically)")
    p.add_argument("--requests", type=int, default=2000, help="measured requests per worker count (default 2000)")
    p.add_argument("--warmup", type=int, default=100, help="unmeasured requests first (default 100)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[4, 8],
                   help="requests in flight at most; each value is a run (default 4 8)")
    p.add_argument("--time-cap", type=float, default=60.0, help="seconds per worker count (default 60)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    p.add_argument("--checkpoint", type=Path, help="serve this checkpoint alone (with --data)")
    p.add_argument("--data", type=Path, help="the processed folder the checkpoint was trained on")
    p.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS),
                   help="models to serve without --checkpoint; the first is the headline (default: all)")
    p.add_argument("--microbatch-max", type=int,
                   help="NOSTRADE_MICROBATCH_MAX of the server (default: its own; 1: no micro-batching)")
    p.add_argument("--microbatch-wait-ms", type=float,
                   help="NOSTRADE_MICROBATCH_WAIT_MS of the server (default: its own, code/batching.py)")
    p.add_argument("--reuse-port", action="store_true",
                   help="serve with code/serve.py (one SO_REUSEPORT socket per worker) instead of uvicorn --workers")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if (args.checkpoint is None) != (args.data is None):
        p.error("--checkpoint and --data go together")
    if min(args.requests, min(args.concurrency), min(args.workers), args.microbatch_max or 1) < 1:
        p.error("--requests, --concurrency, --workers and --microbatch-max must be at least 1")
    if (args.microbatch_wait_ms or 0) < 0:
        p.error(f"--microbatch-wait-ms: {args.microbatch_wait_ms} must be at least 0")

    with tempfile.TemporaryDirectory(prefix="nostrade-load-") as tmp:
        tmp, rows = Path(tmp), {}
        for row in [str(args.checkpoint)] if args.checkpoint else args.rows:
            checkpoint, data_dir = row_model(row, args, tmp)
            print(f"{row} ({checkpoint}):", flush=True)
            rows[row] = load_runs(checkpoint, data_dir, tmp, args)
            rows[row]["kind"] = read_checkpoint(checkpoint)["model_kind"]
    headline_row = next(iter(rows))
    headline = min(rows[headline_row]["runs"], key=lambda r: (-r["workers"], r["concurrency"]))
    record = {**{k: headline[k] for k in ("rps", "p50_ms", "p99_ms", "errors", "workers", "concurrency")},
              "kind": rows[headline_row]["kind"], "headline": headline_row,
              "targets": {"rps": 300, "p99_ms": 50, "errors": 0},
              "endpoint": "POST /recommend", "history_length": HISTORY_LENGTH, "k": 20, "explain": True,
              "microbatch": {"max": args.microbatch_max, "wait_ms": args.microbatch_wait_ms},  # None: the server's
              "server": ("code/serve.py: one SO_REUSEPORT socket per worker" if args.reuse_port
                         else "uvicorn --workers: one socket shared by the workers"),
              "rows": rows,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "torch": torch.__version__},
              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
