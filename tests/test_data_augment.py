"""The fast augment_batch equals the straightforward formulation (the original code, kept here verbatim)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medflip.data.augment import IMAGE_MEAN, IMAGE_STD, AugmentConfig, _affine_grid, augment_batch


def reference_augment(images_u8, size, generator, cfg=None):
    cfg = cfg or AugmentConfig()
    b = images_u8.shape[0]

    def uniform(lo, hi):
        return torch.rand(b, generator=generator) * (hi - lo) + lo

    area = uniform(*cfg.scale)
    ratio = torch.exp(uniform(math.log(cfg.ratio[0]), math.log(cfg.ratio[1])))
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = uniform(-1, 1) * (1 - sx)
    ty = uniform(-1, 1) * (1 - sy)
    rot = torch.deg2rad(uniform(-cfg.degrees, cfg.degrees))
    sh = torch.tan(torch.deg2rad(uniform(-cfg.shear, cfg.shear)))
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(b)
    cos, sin = torch.cos(rot), torch.sin(rot)
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
    x = images_u8.float().div_(255.0)
    grid = F.affine_grid(theta, [b, 1, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = x.clamp_(1e-6, 1.0).pow_(gamma.view(b, 1, 1, 1))
    x = (x - 0.5) * contrast.view(b, 1, 1, 1) + 0.5 + brightness.view(b, 1, 1, 1)
    return (x.clamp_(0.0, 1.0) - IMAGE_MEAN) / IMAGE_STD


@pytest.mark.parametrize("src", [224, 256, 97])
@pytest.mark.parametrize(
    "cfg", [AugmentConfig(), AugmentConfig(hflip=True, degrees=30.0, shear=10.0, gamma=0.5)]
)
def test_fast_augment_matches_reference(src, cfg):
    x = torch.randint(
        0, 256, (37, 1, src, src + 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(src)
    )
    x[0] = 0  # black image: pow of zeros must stay finite
    fast = augment_batch(x, 64, torch.Generator().manual_seed(7), cfg)
    ref = reference_augment(x, 64, torch.Generator().manual_seed(7), cfg)
    assert fast.shape == (37, 1, 64, 64) and torch.isfinite(fast).all()
    assert (fast - ref).abs().max().item() < 2e-3


def test_affine_grid_matches_torch():
    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(
        _affine_grid(theta, 33), F.affine_grid(theta, [5, 1, 33, 33], align_corners=False), atol=1e-5
    )


def test_same_generator_same_batch_and_generator_advances():
    x = torch.randint(0, 256, (4, 1, 40, 40), dtype=torch.uint8)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = augment_batch(x, 32, g1), augment_batch(x, 32, g2)
    assert torch.equal(a, b) and not torch.equal(augment_batch(x, 32, g1), a)


def test_result_does_not_depend_on_thread_count():
    x = torch.randint(0, 256, (100, 1, 50, 60), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = augment_batch(x, 48, torch.Generator().manual_seed(5))
        torch.set_num_threads(2)
        two = augment_batch(x, 48, torch.Generator().manual_seed(5))
        assert torch.get_num_threads() == 2  # the worker pool does not change the caller's setting
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, two)
