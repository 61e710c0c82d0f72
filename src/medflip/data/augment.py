"""Batched, seeded image augmentation on tensors (runs on whatever device the batch is on).

One affine warp per image combines random-resized-crop, small rotation/shear/translation and the
resize to the model's input size, so a batch costs one `grid_sample` instead of three passes.
No horizontal flip by default: chest anatomy is not left-right symmetric (heart on the left, the
liver lifts the right hemidiaphragm); a flipped film is a different, rarer anatomy (situs inversus),
and flipping would teach the model that cardiomegaly can live on either side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Grayscale normalisation used everywhere: x = (u8 / 255 - MEAN) / STD.
IMAGE_MEAN = 0.5
IMAGE_STD = 0.25


@dataclass
class AugmentConfig:
    scale: tuple[float, float] = (0.7, 1.0)  # area fraction kept by the random resized crop
    ratio: tuple[float, float] = (0.85, 1.18)  # aspect ratio range of the crop
    degrees: float = 7.0  # max rotation
    shear: float = 4.0  # max shear (degrees)
    brightness: float = 0.15  # additive, in units of the [0, 1] intensity range
    contrast: float = 0.15  # multiplicative: 1 +- contrast
    gamma: float = 0.15  # exp(+- gamma)
    hflip: bool = False  # see module docstring


def normalize(images_u8: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """uint8 [B, 1, H, W] -> float [B, 1, size, size] normalised, no augmentation (evaluation)."""
    x = images_u8.float().div_(255.0)
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x - IMAGE_MEAN) / IMAGE_STD


def augment_batch(
    images_u8: torch.Tensor, size: int, generator: torch.Generator, cfg: AugmentConfig | None = None
) -> torch.Tensor:
    """uint8 [B, 1, H, W] -> augmented, normalised float [B, 1, size, size].

    All randomness comes from `generator` (a CPU generator; draws are made on the CPU), so a run is
    reproducible and resumable whatever the device.
    """
    cfg = cfg or AugmentConfig()
    b = images_u8.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, generator=generator) * (hi - lo) + lo

    area = uniform(*cfg.scale)
    log_r = uniform(math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
    ratio = torch.exp(log_r)
    sx = torch.sqrt(area * ratio).clamp(max=1.0)  # crop half-extent in normalised coords (1 = full)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (uniform(-1, 1) * (1 - sx))  # crop centre stays inside the image
    ty = (uniform(-1, 1) * (1 - sy))
    rot = torch.deg2rad(uniform(-cfg.degrees, cfg.degrees))
    sh = torch.tan(torch.deg2rad(uniform(-cfg.shear, cfg.shear)))
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(b)
    cos, sin = torch.cos(rot), torch.sin(rot)
    # theta maps output coords -> input coords: crop-scale * rotation * shear (+ translation).
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = sx * cos * flip
    theta[:, 0, 1] = sx * (-sin + sh * cos)
    theta[:, 1, 0] = sy * sin * flip
    theta[:, 1, 1] = sy * (cos + sh * sin)
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    contrast = uniform(1 - cfg.contrast, 1 + cfg.contrast)
    brightness = uniform(-cfg.brightness, cfg.brightness)
    gamma = torch.exp(uniform(-cfg.gamma, cfg.gamma))

    device = images_u8.device
    x = images_u8.float().div_(255.0)
    grid = F.affine_grid(theta.to(device), [b, 1, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = x.clamp_(1e-6, 1.0).pow_(gamma.to(device).view(b, 1, 1, 1))
    x = (x - 0.5) * contrast.to(device).view(b, 1, 1, 1) + 0.5 + brightness.to(device).view(b, 1, 1, 1)
    return (x.clamp_(0.0, 1.0) - IMAGE_MEAN) / IMAGE_STD
