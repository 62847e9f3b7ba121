"""Data-parallel training under ``torchrun``: one process per rank, the global batch split over them.

torchrun sets RANK, WORLD_SIZE and the rendezvous address; ``init`` joins the group (gloo on
the CPU, nccl on CUDA, one GPU per process). Without torchrun, or before ``init``, this is a
world of one and every helper is a no-op, so ``vgg.train.fit`` runs unchanged in one process.
"""
from __future__ import annotations

import datetime
import os

import numpy as np
import torch
import torch.distributed as dist


def launched() -> bool:
    """True in a process that torchrun started with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str = "auto") -> None:
    """Join torchrun's process group: nccl when this rank trains on CUDA, gloo otherwise.
    The timeout is long: ranks other than 0 wait at a barrier while rank 0 evaluates."""
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=12))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_threads() -> int:
    """CPU threads for one rank: the cores shared by the ranks on this machine."""
    return max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model to train with: DistributedDataParallel (gradients averaged over the ranks)."""
    return torch.nn.parallel.DistributedDataParallel(model) if world() > 1 else model


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """``values`` summed over the ranks (the same list on every rank)."""
    return _collective(values, device, dist.all_reduce)


def from_rank0(values: list[float], device: torch.device) -> list[float]:
    """Rank 0's ``values`` on every rank: one decision for the schedule."""
    return _collective(values, device, lambda t: dist.broadcast(t, 0))


def _collective(values, device, op):
    if world() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    op(t)
    return t.tolist()


class Shards:
    """This rank's share of a set of ``n`` items (every world-th, from its rank) and the
    collectives that put the shares back together: sharded evaluation (vgg.evaluate.evaluate_run)."""

    def __init__(self, n: int):
        self.n, self.idx = n, torch.arange(rank(), n, world())

    def objects(self, obj) -> list:
        """``obj`` of every rank, in rank order."""
        out = [None] * world()
        dist.all_gather_object(out, obj) if world() > 1 else out.__setitem__(0, obj)
        return out

    def rows(self, part: np.ndarray) -> np.ndarray:
        """The ranks' rows (each for its ``idx``) as one array in the set's order."""
        full = np.empty((self.n,) + part.shape[1:], dtype=part.dtype)
        for r, rows in enumerate(self.objects(part)):
            full[r::world()] = rows
        return full


def barrier() -> None:
    world() > 1 and dist.barrier()


def finish() -> None:
    dist.is_initialized() and dist.destroy_process_group()
