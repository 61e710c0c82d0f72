"""augment_batch: where known points go (identity, mirror, crop zoom, rotation), photometric bounds,
determinism. Properties of the geometry, not a second copy of the code that builds the matrix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medflip.data.augment import IMAGE_MEAN, IMAGE_STD, AugmentConfig, _affine_grid, augment_batch


def only(**kw) -> AugmentConfig:
    """A config that does nothing except `kw`."""
    none = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), degrees=0.0, shear=0.0, brightness=0.0, contrast=0.0)
    return AugmentConfig(**{**none, "gamma": 0.0, "hflip": False, **kw})


def to_u8_units(out: torch.Tensor) -> torch.Tensor:
    return (out * IMAGE_STD + IMAGE_MEAN) * 255.0


def ramp(n: int, b: int, dx: float = 2.0, dy: float = 0.0) -> torch.Tensor:
    """uint8 [b, 1, n, n] with value dx * column + dy * row."""
    i = torch.arange(n, dtype=torch.float32)
    return (dx * i[None, :] + dy * i[:, None]).round().to(torch.uint8).expand(b, 1, n, n).contiguous()


def test_nothing_to_do_maps_every_pixel_to_itself():
    x = torch.randint(0, 256, (6, 1, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = augment_batch(x, 40, torch.Generator().manual_seed(1), only())
    assert (to_u8_units(out) - x.float()).abs().max() < 1e-3


def test_flip_maps_a_point_to_its_mirror():
    x = torch.zeros(16, 1, 32, 32, dtype=torch.uint8)
    x[:, :, 5, 3] = 255
    out = augment_batch(x, 32, torch.Generator().manual_seed(0), only(hflip=True))
    where = {divmod(int(o.flatten().argmax()), 32) for o in out}
    assert where == {(5, 3), (5, 28)}  # both happen among 16 images, nothing else


def test_crop_of_a_quarter_area_zooms_two_times_without_rotation():
    # area 1/4, ratio 1: the crop is half the image on each side, shown at full size: a ramp of 2 per
    # input pixel becomes 1 per output pixel along x, and stays flat along y.
    out = to_u8_units(
        augment_batch(ramp(64, 8), 64, torch.Generator().manual_seed(0), only(scale=(0.25, 0.25)))
    )
    centre = out[:, 0, 16:48, 16:48]
    assert torch.allclose(centre.diff(dim=-1), torch.ones(()), atol=1e-3)
    assert centre.diff(dim=-2).abs().max() < 1e-3


def test_rotation_keeps_lengths_and_stays_within_the_configured_angle():
    out = to_u8_units(augment_batch(ramp(96, 16), 96, torch.Generator().manual_seed(0), only(degrees=20.0)))
    centre = out[:, 0, 30:66, 30:66]  # away from the border padding of the rotated corners
    gx = centre.diff(dim=-1)[:, :-1, :].mean(dim=(1, 2))
    gy = centre.diff(dim=-2)[:, :, :-1].mean(dim=(1, 2))
    assert torch.allclose(torch.hypot(gx, gy), torch.full((16,), 2.0), atol=0.02)  # a rotation: |grad| kept
    angles = torch.rad2deg(torch.atan2(gy, gx))
    assert angles.abs().max() <= 20.5 and angles.abs().max() > 5  # rotated, within +-20 degrees


def test_photometric_changes_stay_within_their_ranges():
    x = torch.full((32, 1, 16, 16), 128, dtype=torch.uint8)
    out = to_u8_units(augment_batch(x, 16, torch.Generator().manual_seed(0), only(brightness=0.1)))
    shift = out[:, 0, 0, 0] - 128.0
    assert (out == out[:, :, :1, :1]).all()  # a uniform shift per image
    assert shift.abs().max() <= 25.5 + 1e-3 and shift.std() > 1  # +-0.1 of the range, and it varies
    r = ramp(64, 8, dx=4.0)
    out = to_u8_units(augment_batch(r, 64, torch.Generator().manual_seed(0), only(gamma=0.5)))
    assert (out[:, 0].diff(dim=-1) >= -1e-3).all()  # gamma keeps the order of intensities
    assert out[:, 0, :, 0].abs().max() < 0.01  # and black stays black


@pytest.mark.parametrize("src", [97, 256])
def test_default_augmentation_output_is_finite_and_normalised(src):
    x = torch.randint(
        0, 256, (37, 1, src, src + 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(src)
    )
    x[0] = 0  # black image: pow of zeros must stay finite
    out = augment_batch(x, 64, torch.Generator().manual_seed(7), AugmentConfig(hflip=True, degrees=30.0))
    lo, hi = (0 - IMAGE_MEAN) / IMAGE_STD, (1 - IMAGE_MEAN) / IMAGE_STD
    assert out.shape == (37, 1, 64, 64) and torch.isfinite(out).all() and out.min() >= lo and out.max() <= hi


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
