"""The one batched-inference loop of the evaluations: uint8 images in, one tensor per image out.

Zero-shot image embeddings, linear-probe features and fine-tuned class probabilities all read uint8
[N, H, W] images (an array, a memory map or an `IndexedImages` view) in batches, normalise them for the
model's input size, run a function under the chosen precision and collect float32 results on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from medflip.data.augment import normalize
from medflip.runtime import autocast_context


@torch.inference_mode()
def map_images(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images,
    image_size: int,
    device: torch.device | str,
    out_dim: int,
    batch_size: int = 64,
    precision: str = "auto",
    progress: bool = False,
    desc: str = "images",
) -> torch.Tensor:
    """fn: normalised float images [B, 1, image_size, image_size] on `device` -> [B, out_dim].

    images: uint8 [N, H, W]. Returns float32 [N, out_dim] on the CPU ([0, out_dim] for no images).
    precision: "auto" (bf16 autocast on CUDA, fp32 elsewhere), "bf16" or "fp32"; on CPUs with AVX512-BF16
    or AMX "bf16" is 2-3x faster than fp32 (measured in the README).
    """
    device = torch.device(device)
    out = []
    for i in tqdm(range(0, len(images), batch_size), disable=not progress, desc=desc, unit="batch"):
        # a writable copy of the rows (a memory map's rows are read-only; torch wants writable memory)
        x = torch.from_numpy(np.array(images[i : i + batch_size])).unsqueeze(1)
        with autocast_context(device, precision):
            out.append(fn(normalize(x.to(device), image_size)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, out_dim)
