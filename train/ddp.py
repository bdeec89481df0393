"""Processes and devices: one process per device, started by torchrun (or alone).

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE (and the rendezvous variables); without them this is a
single process. CUDA uses NCCL and one GPU per local rank; CPU uses gloo, so DDP runs (and is tested)
on a laptop.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from gpt.device import pick_device


@dataclass
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads(local_world: int = 1) -> int:
    """Torch CPU threads per process when train.threads is 0: this machine's cores but one, shared by its
    processes. Torch's OpenMP threads spin-wait for each other, so one thread descheduled by any other busy
    process stalls them all: on 2 cores, 2 threads ran 1.6x faster than 1 alone but 2.2-4.4x slower than
    alone beside one busy process, while 1 thread did not slow down at all (bench/results/threads-*.json).
    Leaving a core free costs 1/cores of the idle speed and keeps the worst case near 1x; set train.threads
    to use every core of a machine that is yours alone."""
    return max(1, (usable_cores() - 1) // local_world)


def setup(device_pref: str = "auto", threads: int = 0) -> DistInfo:
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    try:
        device = pick_device(device_pref, local_rank)
    except ValueError as e:
        raise ValueError(f"train.device={device_pref}: {e}") from None
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        # share the cores between the processes of this machine instead of oversubscribing them
        torch.set_num_threads(threads or default_threads(local_world))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                device_id=device if use_cuda else None)
    return DistInfo(rank, local_rank, world_size, local_world, device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj) -> list:
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
