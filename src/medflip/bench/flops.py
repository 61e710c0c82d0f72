"""The analytic ceiling of masking: matmul FLOPs of both towers at a mask ratio, and GPU peaks for MFU."""

from __future__ import annotations

import math


def transformer_flops(tokens: int, width: int, depth: int, mlp_ratio: float = 4.0) -> float:
    """Forward matmul FLOPs of `depth` pre-norm blocks on one sequence (2 FLOPs per multiply-add).

    Per block: qkv 6 n D^2, output projection 2 n D^2, MLP 4 r n D^2, attention scores + weighted sum 4 n^2 D.
    """
    n, d = tokens, width
    return depth * ((8 + 4 * mlp_ratio) * n * d * d + 4 * n * n * d)


def ceiling_speedup(
    num_patches: int,
    vit_width: int,
    vit_depth: int,
    patch_dim: int,
    text_tokens: int,
    text_width: int,
    text_depth: int,
    ratio: float,
) -> float:
    """FLOPs(step at ratio 0) / FLOPs(step at ratio); training ~ 3x forward for both towers alike."""
    args = (num_patches, vit_width, vit_depth, patch_dim, text_tokens, text_width, text_depth)
    return pair_forward_flops(*args, 0.0) / pair_forward_flops(*args, ratio)


def pair_forward_flops(
    num_patches: int,
    vit_width: int,
    vit_depth: int,
    patch_dim: int,
    text_tokens: int,
    text_width: int,
    text_depth: int,
    ratio: float,
) -> float:
    """Forward matmul FLOPs of both towers for one image-text pair at mask `ratio` (losses and heads not counted)."""
    visible = math.floor(num_patches * (1 - ratio)) + 1  # + class token
    patch_embed = 2 * num_patches * patch_dim * vit_width  # runs before masking
    image = patch_embed + transformer_flops(visible, vit_width, vit_depth)
    return image + transformer_flops(text_tokens, text_width, text_depth)


# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) for model-FLOPs utilisation; matched in the device name.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def peak_tflops(device_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)
