"""Data-parallel training on PyTorch's own engine: torchrun, DDP or FSDP2, DCP checkpoints.

    torchrun --standalone --nproc-per-node 2 -m framecast.train --preset tiny --out runs/x

torchrun starts one process per device and sets RANK, WORLD_SIZE and LOCAL_RANK; `session()`
joins them into a process group (NCCL on GPUs, gloo on CPUs). Without torchrun (or with one
process) nothing is initialised and training runs exactly as it always has.

One global order, whatever the world size: a step's global batch is the one a single process
would draw (the same clips, noise, flow times and captions), each rank computes its rows
[start, stop) of it (`Dist.rows`), and the losses return shares that sum over ranks to the
single-process loss. So N processes follow the 1-process run up to floating-point summation
order, and a checkpoint resumes on any number of processes, data position included.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

# Ranks other than 0 may wait a long time on rank 0 (rendering world clips, caching latents):
# they wait on a gloo group of its own, so the training group keeps its short timeout.
WAIT_TIMEOUT = timedelta(hours=24)
_wait_group = None


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank of world_size; local_rank picks its GPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """More than one process: the model is wrapped and gradients are reduced."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0, the one that writes logs, data and the model folder."""
        return self.rank == 0

    def rows(self, n: int) -> tuple[int, int]:
        """This rank's rows [start, stop) of a global batch of n (sizes differ by at most one)."""
        return n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size

    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def from_env() -> Dist:
    """The Dist that torchrun's environment describes (one process without it)."""
    def env(name: str, default: int) -> int:
        return int(os.environ.get(name, default))
    d = Dist(env("RANK", 0), env("WORLD_SIZE", 1), env("LOCAL_RANK", 0))
    if not 0 <= d.rank < d.world_size:
        raise ValueError(f"RANK {d.rank} is outside WORLD_SIZE {d.world_size}")
    return d


@contextmanager
def session():
    """Join torchrun's process group for the duration (a no-op for one process)."""
    global _wait_group
    d = from_env()
    created = False
    if d.active and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(d.local_rank)
        dist.init_process_group(backend, device_id=d.device() if backend == "nccl" else None)
        created = True
    if d.active and _wait_group is None:
        _wait_group = dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT)
    try:
        yield d
    finally:
        if created:
            _wait_group = None
            dist.destroy_process_group()


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (for as long as WAIT_TIMEOUT: rank 0 may be preparing data)."""
    if initialized():
        dist.barrier(group=_wait_group)


def main_first(d: Dist, fn, *args, **kwargs):
    """Run fn on rank 0 alone (it writes files the others then read); every rank gets its result
    after rank 0 is done. If rank 0 fails, torchrun stops the waiting ranks."""
    result = fn(*args, **kwargs) if d.main else None
    barrier()
    return result


def global_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of x over all ranks (detached); x itself with one process."""
    if not initialized():
        return x.detach()
    y = x.detach().clone()
    dist.all_reduce(y)
    return y


def local_tensor(x):
    """A plain tensor of a DTensor (FSDP2's gradient norm, for one); anything else as it is."""
    full = getattr(x, "full_tensor", None)
    return full() if callable(full) else x
