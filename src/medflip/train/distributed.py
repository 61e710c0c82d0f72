"""torchrun / DDP plumbing: process-group setup, this rank's device, and the few values ranks must agree on.

Launch (one node, K processes; several nodes: the same command on each with --nnodes / --rdzv-endpoint):

    torchrun --nproc_per_node K -m medflip pretrain ...

Every rank reads LOCAL_RANK to pick its GPU (`medflip.runtime.resolve_device`), trains on its share of the
global batch (`DecoupledBatches.batch(step, rank, world)`), and gathers what the loss needs through
`medflip.losses.MedFLIPObjective`. Rank 0 alone logs, draws the progress bar and writes checkpoints.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group when launched by torchrun; returns (rank, world_size). (0, 1) otherwise.

    On CUDA the rank's GPU becomes the current device before NCCL starts (NCCL binds to it).
    """
    if world_size_from_env() <= 1 and not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # A rank that dies is noticed by torchrun, which ends the others; the timeout only bounds a hang where
        # no process exits (e.g. a deadlocked collective).
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=30)
        )
    return dist.get_rank(), dist.get_world_size()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _device_for_collectives() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


def step_agreement(seconds: float, samples: int) -> tuple[float, int]:
    """(this step's wall-clock as the slowest rank saw it, samples all ranks processed).

    The wall-clock drives the LR schedule and the time budget, so every rank must use the same number:
    the maximum over ranks (DDP keeps ranks in step, so the spread is small).
    """
    if not is_distributed():
        return seconds, samples
    dev = _device_for_collectives()
    t = torch.tensor([seconds], dtype=torch.float64, device=dev)
    n = torch.tensor([samples], dtype=torch.int64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    dist.all_reduce(n)
    return float(t.item()), int(n.item())


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def is_main_process() -> bool:
    """Rank 0 of a running process group, or the only process."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def finish_distributed() -> None:
    """Leave the process group cleanly (after every rank has finished its last write)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
