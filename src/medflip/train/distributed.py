"""torchrun / DDP support: process-group setup and all-gather that keeps gradients (open_clip style).

Each rank computes the loss over the global batch (features and labels gathered from every rank).
`torch.distributed.nn.functional.all_gather` sends gradients back to the rank that owns each feature;
DDP then averages parameter gradients, so the update equals single-process training on the global
batch. The SVD loss uses the local batch only (its [N, M, n_v, n_t] cost grows with the square of the
batch, and token tensors are large to gather); see docs/method.md.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Initialise the process group when launched by torchrun; returns (rank, world_size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """[n, ...] per rank -> [world * n, ...], differentiable."""
    if not is_distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return x
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)
