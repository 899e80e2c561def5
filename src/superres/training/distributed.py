"""Training on several processes under torchrun: DDP with gloo on CPUs and NCCL on CUDA.

torchrun gives each process RANK, LOCAL_RANK and WORLD_SIZE and the rendezvous (MASTER_ADDR
and MASTER_PORT, or ``--rdzv-endpoint``); :func:`join_world` reads them. ``--batch-size`` is
the global batch: each of N processes computes a disjoint share of batch/N patches (see
:class:`~superres.training.data.PatchSampler`) and DDP averages the gradients, so a step is the
one-process step on the whole batch, up to float rounding, and a run resumes with any number
of processes. Only rank 0 validates and writes the run folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from superres.engine.devices import resolve_device
from superres.errors import SuperresError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Rank 0: the one process that validates, prints and writes."""
        return self.rank == 0

    def share(self, global_batch: int) -> range:
        """This process's patches of each ``global_batch``-patch batch, in rank order."""
        if global_batch % self.size:
            raise SuperresError(
                f"--batch-size {global_batch} (the global batch) does not split evenly over "
                f"{self.size} processes; use a multiple of {self.size}"
            )
        per_process = global_batch // self.size
        return range(self.rank * per_process, (self.rank + 1) * per_process)

    def wrap(self, network: nn.Module) -> nn.Module:
        """DDP over the processes, or the network itself when there is one."""
        if self.size == 1:
            return network
        ids = [self.device.index] if self.device.type == "cuda" else None
        # The networks' buffers are fixed bicubic kernels: nothing to synchronise each step.
        return DistributedDataParallel(network, device_ids=ids, forward_sync_buffers=False)

    def any(self, flag: bool) -> bool:
        """Whether any process raised ``flag``, so that all stop at the same step."""
        if self.size == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the processes (each holds an equal share of the batch)."""
        if self.size == 1:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.item() / self.size

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def join_world(device: str) -> World:
    """This process's :class:`World`: under torchrun, joined to the others (NCCL when the
    device is CUDA, each process on ``cuda:LOCAL_RANK``; gloo on CPUs); alone otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    chosen = resolve_device(device)
    if size == 1:
        return World(device=chosen)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if chosen.type == "cuda":
        if chosen.index is not None:
            raise SuperresError(
                f"--device {device}: under torchrun each process takes cuda:LOCAL_RANK; "
                "pass --device cuda (or auto)"
            )
        chosen = resolve_device(f"cuda:{local_rank}")
        torch.cuda.set_device(chosen)
        backend = "nccl"
    elif chosen.type == "cpu":
        backend = "gloo"
    else:
        raise SuperresError(
            f"distributed training runs on CPUs (gloo) or CUDA (NCCL), not {chosen}"
        )
    try:
        dist.init_process_group(backend)
    except (RuntimeError, ValueError) as error:
        raise SuperresError(f"rank {rank} could not join the other processes: {error}") from None
    return World(rank, size, local_rank, chosen)


def leave_world() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
