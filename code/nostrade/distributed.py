"""Data-parallel training under ``torchrun`` (torch.distributed + DDP): gloo on CPU, NCCL on GPUs.

Run ``torchrun --nproc_per_node N -m nostrade.train ...``; without torchrun everything is a single process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def default_threads() -> int:
    """CPU threads per process: NOSTRADE_THREADS when set, else the machine's cores shared among the processes
    torchrun starts on it (LOCAL_WORLD_SIZE): more threads than cores slow every process down."""
    share = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return int(os.environ.get("NOSTRADE_THREADS") or max(share, 1))


def setup(device: str = "auto") -> Context:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    chosen = pick_device(device)
    if world_size == 1:
        return Context(0, 1, chosen)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), chosen)


def broadcast_from_main(value, ctx: Context):
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if ctx.world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=ctx.device if ctx.device.type == "cuda" else None)
    return box[0]


def wait_for_all(ctx: Context) -> None:
    """Block until every rank gets here (e.g. while rank 0 evaluates and saves): a rank that tears the group
    down while another still uses it can abort in gloo's threads ("terminate called without an active exception")."""
    if ctx.world_size > 1:
        dist.barrier()


def teardown(ctx: Context) -> None:
    if ctx.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
