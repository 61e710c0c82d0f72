"""Run-time plumbing shared by training and evaluation: which device, which precision, which LR schedule,
which AdamW parameter groups.

A foundation module: it imports nothing of medflip but `errors`, so `train` and `evaluate` can both use it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from medflip.errors import UserError


def local_rank() -> int:
    """This process's index on its machine under torchrun / `srun torchrun` (LOCAL_RANK), else 0."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto": CUDA (the GPU of this process's LOCAL_RANK under torchrun), else MPS, else CPU.

    A bare "cuda" under torchrun also means this process's own GPU: every rank writing "cuda" would otherwise
    land on cuda:0. An explicit "cuda:N" is taken as given.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", local_rank() % max(1, torch.cuda.device_count()))
    return device


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CUDA by default; fp32 on CPU unless asked ("bf16": CPUs with AVX512-BF16 gain)."""
    if precision not in ("auto", "bf16", "fp32"):
        raise UserError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()


def attention_kernel(name: str, device: torch.device):
    """The scaled-dot-product attention kernel training runs with (train.attention).

    "auto": PyTorch's choice. "math": PyTorch's plain-math attention on the CPU (a no-op elsewhere): for very
    short sequences (the demo's ViT sees 9 tokens) the CPU flash kernel's bf16 backward costs ~10x its forward
    and ~40% of a step. Measured on the demo (one thread, interleaved, same load): 0.296 CPU-s per step fp32,
    0.253 bf16, 0.155 bf16 + math attention. A config setting, not a caller's context, so a run's
    config.json replays it.
    """
    if name not in ("auto", "math"):
        raise UserError(f"train.attention must be auto or math, got {name!r}")
    if name == "auto" or device.type != "cpu":
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def warmup_cosine(
    total_steps: int,
    warmup_steps: int,
    min_ratio: float = 0.0,
    time_fraction: Callable[[], float] | None = None,
) -> Callable[[int], float]:
    """LR multiplier: linear warmup to 1, then cosine to min_ratio at total_steps.

    With a wall-clock budget, `time_fraction()` (elapsed / budget) also drives the cosine: progress is the
    larger of the two, so every run ends its schedule when its budget ends, however fast its steps are
    (the fair way to compare masked and unmasked training at equal wall-clock).
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if time_fraction is not None:
            progress = max(progress, time_fraction())
        progress = min(1.0, progress)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


NO_DECAY_NAMES = ("logit_scale", "pos_embed", "cls_token", "mask_token")


def adamw_param_groups(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    lr_of: Callable[[str], float],
    weight_decay: float,
    no_decay_names: tuple[str, ...] = NO_DECAY_NAMES,
) -> list[dict]:
    """AdamW parameter groups {learning rate} x {decay, no decay}, for every trainable parameter.

    No weight decay on 1-d parameters (norms, biases), the temperature and token / position embeddings:
    shrinking those toward zero has no regularising meaning. `lr_of(name)` gives each parameter's learning rate
    (e.g. a smaller one for a pretrained tower). Groups come out in a fixed order (by lr, then decay), so the
    optimizer state of a checkpoint maps back onto the same groups.
    """
    groups: dict[tuple[float, bool], list] = {}
    for name, p in named_parameters:
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2 and not any(k in name for k in no_decay_names)
        groups.setdefault((lr_of(name), decay), []).append(p)
    return [
        {"params": ps, "lr": lr, "weight_decay": weight_decay if decay else 0.0}
        for (lr, decay), ps in sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[0][1]))
    ]
