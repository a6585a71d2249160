"""Training at full size: one epoch per loss, one full evaluation, peak memory, and 2-process data parallel.

    python benchmarks/scale.py --out artifacts/bench/scale.json [--users 73515 --items 11200 --per-user 106]
    python benchmarks/scale.py --out FILE.json --data DIR         (a processed folder instead of synthetic data)
    python benchmarks/scale.py --out FILE.json --quick            (smoke run: 2,000 users, 500 items)

Without --data it generates the seeded synthetic set of the issue (make_processed_data.py --source synthetic:
73,515 users, 11,200 titles, ~7.7M events). Every run is the real command, `python -m nostrade.train
--epochs 1 --loss LOSS ...`, in a fresh process: its metrics JSON gives the epoch's training seconds and its
validation evaluation's (every evaluated user, full ranking), wait4 its peak RSS. Runs: --loss sampled and
--loss ce on --threads threads, then `torchrun --nproc_per_node 2` (gloo, 1 thread each) with --loss sampled.
ce (the full-catalogue softmax) runs --ce-steps optimizer steps of the epoch and its epoch time is the
measured time scaled to all of the epoch's steps (labelled in "epoch_s_extrapolated"); --ce-steps 0 runs it
whole. Targets (issue 18): sampled epoch <= 180 s on 2 cores, peak RSS < 4 GB, full evaluation < 60 s.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from nostrade.atomic import write_json

FULL = dict(users=73_515, items=11_200, per_user=106.0)
QUICK = dict(users=2_000, items=500, per_user=50.0)
QUICK_FLAGS = ["--d-model", "16", "--n-layers", "1", "--max-len", "50"]
TARGETS = {"sampled_epoch_s": 180.0, "peak_rss_mb": 4000.0, "eval_s": 60.0}


def generate(folder: Path, users: int, items: int, per_user: float, seed: int) -> None:
    """The synthetic processed folder, made in a child process: a child started from a big parent would
    inherit its peak RSS (Linux keeps it across exec), so this process stays small."""
    subprocess.run([sys.executable, "make_processed_data.py", "--source", "synthetic", "--n-users", str(users),
                    "--n-items", str(items), "--interactions-per-user", str(per_user), "--seed", str(seed),
                    "--out", str(folder / "processed"), "--artifacts", str(folder / "processed"),
                    "--synthetic-dir", str(folder / "raw"), "--quiet"], check=True, cwd=Path(__file__).parents[1])


def measured(command: list[str], env: dict) -> tuple[float, float]:
    """Run ``command``; its wall seconds and peak RSS in MB (the largest of it and its waited-for children)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env={**os.environ, **env})
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark run failed (exit {os.waitstatus_to_exitcode(status)}): {' '.join(command)}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024  # Linux reports KiB


def train_run(data: Path, work: Path, name: str, flags: list[str], processes: int, threads: int) -> dict:
    """One epoch of `nostrade.train` (under torchrun with ``processes`` > 1): its record of the epoch."""
    metrics = work / f"{name}.json"
    args = ["-m", "nostrade.train", "--data", str(data), "--out", str(work / f"{name}.pt"), "--metrics",
            str(metrics), "--model", "sasrec", "--epochs", "1", "--num-threads", str(threads), *flags]
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--local-addr", "127.0.0.1", "--nproc_per_node",
                     str(processes)]
    env = {"OMP_NUM_THREADS": str(threads), "GLOO_SOCKET_IFNAME": "lo"}
    wall, peak_mb = measured(launcher + args, env)
    epoch = json.loads(metrics.read_text())["history"][0]
    scale = epoch["epoch_steps"] / epoch["steps"]
    return {"epoch_s": epoch["train_seconds"] * scale, "extrapolated": scale > 1, "steps_run": epoch["steps"],
            "epoch_steps": epoch["epoch_steps"], "eval_s": epoch["eval_seconds"], "loss": epoch["loss"],
            "valid_ndcg@10": epoch["valid_ndcg@10"], "peak_rss_mb": peak_mb, "wall_s": wall}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="results JSON")
    p.add_argument("--data", type=Path, help="a processed folder (default: generate the synthetic set)")
    p.add_argument("--users", type=int, default=FULL["users"])
    p.add_argument("--items", type=int, default=FULL["items"])
    p.add_argument("--per-user", type=float, default=FULL["per_user"], help="mean events per user")
    p.add_argument("--seed", type=int, default=0, help="of the synthetic data and of training")
    p.add_argument("--threads", type=int, default=2, help="threads of the single-process runs (default 2)")
    p.add_argument("--ce-steps", type=int, default=400,
                   help="optimizer steps of the ce run, extrapolated to the epoch (0: the whole epoch)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2,000 users, 500 items, a tiny model")
    args, train_flags = p.parse_known_args(argv)  # the rest goes to every nostrade.train run
    size = QUICK if args.quick else {"users": args.users, "items": args.items, "per_user": args.per_user}
    train_flags = [*(QUICK_FLAGS if args.quick else []), "--seed", str(args.seed), *train_flags]
    with tempfile.TemporaryDirectory(prefix="nostrade-bench-scale-") as tmp:
        work = Path(tmp)
        data = args.data
        if data is None:
            generate(work, size["users"], size["items"], size["per_user"], args.seed)
            data = work / "processed"
        meta = json.loads((data / "meta.json").read_text())
        runs = {"sampled": (["--loss", "sampled"], 1, args.threads),
                "ce": (["--loss", "ce", "--max-steps", str(args.ce_steps)], 1, args.threads),
                "ddp2_sampled": (["--loss", "sampled"], 2, 1)}
        results = {}
        for name in (bar := tqdm(runs, desc="scale", unit="run")):
            bar.set_postfix(run=name)
            flags, processes, threads = runs[name]
            results[name] = train_run(data, work, name, [*train_flags, *flags], processes, threads)
            tqdm.write(f"{name}: epoch {results[name]['epoch_s']:.0f} s"
                       f"{' (extrapolated)' if results[name]['extrapolated'] else ''}, evaluation "
                       f"{results[name]['eval_s']:.1f} s, peak RSS {results[name]['peak_rss_mb']:.0f} MB")

    sampled = results["sampled"]
    record = {
        "events": meta["n_interactions"], "users": meta["n_users"], "items": meta["n_items"],
        "synthetic": bool(meta.get("synthetic")),
        "epoch_s": {"ce": results["ce"]["epoch_s"], "sampled": sampled["epoch_s"]},
        "epoch_s_extrapolated": {"ce": results["ce"]["extrapolated"], "sampled": sampled["extrapolated"]},
        "eval_s": sampled["eval_s"], "eval_cases": meta["n_users"],
        "peak_rss_mb": sampled["peak_rss_mb"],
        "ddp2_epoch_s": results["ddp2_sampled"]["epoch_s"],
        "targets": TARGETS,
        "met": {"sampled_epoch_s": sampled["epoch_s"] <= TARGETS["sampled_epoch_s"],
                "peak_rss_mb": sampled["peak_rss_mb"] < TARGETS["peak_rss_mb"],
                "eval_s": sampled["eval_s"] < TARGETS["eval_s"]},
        "runs": results,
        "command": "python benchmarks/scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "train_flags": train_flags, "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                    "platform": platform.platform(), "processor": platform.processor(),
                    "load_average_after": os.getloadavg()},
        "note": ("epoch_s: the training loop of one epoch (batches of 32 users, one window of at most 201 "
                 "events each), without the evaluation; eval_s: the epoch's validation evaluation, every "
                 "evaluated user against the whole catalogue; peak_rss_mb: the single-process sampled run, whole "
                 "command (loading, split, training, validation and test evaluations, checkpoint); ddp2: 2 gloo "
                 "processes x 1 thread, rank 0's training loop. The ce epoch is extrapolated from its steps_run "
                 "when epoch_s_extrapolated.ce is true."),
    }
    write_json(args.out, record)
    print(f"sampled epoch {sampled['epoch_s']:.0f} s, ce epoch {results['ce']['epoch_s']:.0f} s"
          f"{' (extrapolated)' if results['ce']['extrapolated'] else ''}, evaluation {sampled['eval_s']:.1f} s, "
          f"peak RSS {sampled['peak_rss_mb']:.0f} MB, 2-process epoch {record['ddp2_epoch_s']:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
