"""Tests for the synthetic phantom radiographs: measured on the rendered pixels.

Most tests compare *paired* images: the same rng state renders the same "patient" (anatomy,
exposure, noise) with and without a finding, so differences are caused by the finding alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from medflip.demo.phantom import render_phantom, render_phantoms
from medflip.observations import NUM_OBSERVATIONS, OBSERVATIONS

S = 96


def _labels(*names: str) -> np.ndarray:
    v = np.zeros(NUM_OBSERVATIONS, dtype=np.float32)
    for n in names:
        v[OBSERVATIONS.index(n)] = 1.0
    return v


def _pairs(name: str, n: int = 12, seed: int = 9):
    base, find = _labels("No Finding"), _labels(name)
    out = []
    for i in range(n):
        a = render_phantom(base, np.random.default_rng([seed, i]), S).astype(np.float32)
        b = render_phantom(find, np.random.default_rng([seed, i]), S).astype(np.float32)
        out.append((a, b))
    return out


def _px(c: float) -> int:
    """Canonical coordinate in [-1, 1] -> pixel index."""
    return int((c + 1) / 2 * S)


def _zone(img, x0, x1, y0, y1, side):
    if side < 0:
        x0, x1 = -x1, -x0
    return img[_px(y0) : _px(y1), _px(x0) : _px(x1)]


def _box(img, r):
    k = 2 * r + 1
    c = np.pad(np.pad(img, r, mode="edge").cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def _heart_width(img, y=0.3):
    """Width (fraction of the image) of the contiguous bright run around the heart centre."""
    row = _box(img, 1)[_px(y)]
    c = _px(0.1)
    lung = np.percentile(row[_px(-0.7) : _px(0.7)], 10)
    thr = (lung + row[c - 1 : c + 2].mean()) / 2
    lo = hi = c
    while lo > 0 and row[lo - 1] > thr:
        lo -= 1
    while hi < S - 1 and row[hi + 1] > thr:
        hi += 1
    return (hi - lo + 1) / S


def test_dtype_shape_range():
    rng = np.random.default_rng(0)
    labels = (rng.random((6, NUM_OBSERVATIONS)) < 0.3).astype(np.float32)
    imgs = render_phantoms(labels, seed=1, size=64)
    assert imgs.dtype == np.uint8 and imgs.shape == (6, 64, 64)
    assert imgs.std() > 20 and imgs.min() < 40 and imgs.max() > 200
    one = render_phantom(labels[0], np.random.default_rng(3), size=224)
    assert one.shape == (224, 224) and one.dtype == np.uint8


def test_deterministic_and_batch_independent():
    rng = np.random.default_rng(1)
    labels = (rng.random((7, NUM_OBSERVATIONS)) < 0.3).astype(np.float32)
    full = render_phantoms(labels, seed=5, size=48)
    np.testing.assert_array_equal(full, render_phantoms(labels, seed=5, size=48))
    np.testing.assert_array_equal(full[3:6], render_phantoms(labels[3:6], seed=5, size=48, start=3))
    single = render_phantom(labels[4], np.random.default_rng([5, 4]), size=48)
    np.testing.assert_array_equal(full[4], single)
    assert not np.array_equal(full, render_phantoms(labels, seed=6, size=48))


def test_rejects_bad_labels():
    with pytest.raises(ValueError):
        render_phantom(np.zeros(5), np.random.default_rng(0))
    with pytest.raises(ValueError):
        render_phantoms(np.zeros((2, 5)), seed=0)


def test_cardiomegaly_widens_heart():
    widths = np.array([(_heart_width(a), _heart_width(b)) for a, b in _pairs("Cardiomegaly")])
    assert widths[:, 1].mean() > widths[:, 0].mean() + 0.08
    assert (widths[:, 1] > widths[:, 0]).mean() >= 0.8


def test_effusion_raises_lower_lateral_density():
    gains = []
    for a, b in _pairs("Pleural Effusion"):
        d = b - a
        gains.append(max(_zone(d, 0.45, 0.7, 0.15, 0.35, s).mean() for s in (-1, 1)))
    gains = np.array(gains)
    assert gains.mean() > 25 and (gains > 10).mean() >= 0.8


def test_pneumothorax_region_is_textureless():
    before, after = [], []
    for a, b in _pairs("Pneumothorax"):
        darker = _box(b - a, 1) < -12  # the new, darker pleural air
        core = _box(darker.astype(np.float32), 3) > 0.999  # away from the pleural line / borders
        assert core.sum() > 50
        hp_a, hp_b = a - _box(a, 2), b - _box(b, 2)  # fine texture: vessels (+ ribs' edges, noise)
        before.append(hp_a[core].std())
        after.append(hp_b[core].std())
    before, after = np.array(before), np.array(after)
    # noise and ribs stay, so the drop is partial but systematic
    assert after.mean() < 0.9 * before.mean() and (after < before).mean() >= 0.8


def test_edema_raises_perihilar_density():
    gains = np.array(
        [
            np.mean([_zone(b - a, 0.28, 0.45, -0.15, 0.15, s).mean() for s in (-1, 1)])
            for a, b in _pairs("Edema")
        ]
    )
    assert gains.mean() > 20 and (gains > 5).all()


def test_support_devices_add_thin_bright_structures():
    counts = []
    for a, b in _pairs("Support Devices"):
        thin_a = ((a - _box(a, 2)) > 30).sum()
        thin_b = ((b - _box(b, 2)) > 30).sum()
        counts.append(thin_b - thin_a)
    counts = np.array(counts)
    assert counts.mean() > 20 and (counts > 0).mean() >= 0.9


def test_each_finding_changes_the_image():
    for name in OBSERVATIONS[1:]:
        ((a, b),) = _pairs(name, n=1, seed=21)
        assert np.abs(b - a).mean() > 0.05, name


def test_consolidation_is_a_dense_opacity_and_its_parent_labels_add_nothing():
    """Consolidation fills a lobe (the brightest lung zone rises a lot); Lung Opacity / Pneumonia beside it
    name the same lesion, so the image with them is the consolidation image pixel for pixel."""
    gains = []
    for i, (a, b) in enumerate(_pairs("Consolidation", seed=5)):
        zones = [(-0.65, -0.15, 0.2, 0.7), (-0.1, 0.3, 0.2, 0.7), (0.2, 0.55, 0.15, 0.7)]  # (y0, y1, x0, x1)
        gains.append(max(_zone(b - a, x0, x1, y0, y1, s).mean() for y0, y1, x0, x1 in zones for s in (-1, 1)))
        rng = np.random.default_rng([5, i])
        both = render_phantom(_labels("Consolidation", "Lung Opacity", "Pneumonia"), rng, S).astype(
            np.float32
        )
        assert np.array_equal(both, b)
    assert np.median(gains) > 25, gains


DRAWN = [n for n in OBSERVATIONS if n not in ("No Finding", "Support Devices")]


def test_masks_change_no_pixel_and_mark_where_the_finding_changed_the_image():
    """A finding's mask must cover where the image differs from the same patient without it: the mean
    |difference| inside the mask is several times the mean outside (paired renders, same rng state)."""
    for name in DRAWN:
        base, find = _labels("No Finding"), _labels(name)
        ratios = []
        for i in range(6):
            masks: dict = {}
            b = render_phantom(find, np.random.default_rng([3, i]), S, masks=masks)
            np.testing.assert_array_equal(b, render_phantom(find, np.random.default_rng([3, i]), S))
            assert set(masks) == {name}, (name, set(masks))
            m = masks[name]
            assert m.dtype == bool and m.shape == (S, S) and 0 < m.mean() < 0.5, name
            a = render_phantom(base, np.random.default_rng([3, i]), S).astype(np.float32)
            diff = np.abs(b.astype(np.float32) - a)
            ratios.append(diff[m].mean() / max(diff[~m].mean(), 1e-3))
        assert np.median(ratios) > 2.0, (name, np.round(ratios, 2))


def test_render_phantoms_returns_one_mask_dict_per_image():
    labels = np.stack([_labels("Cardiomegaly"), _labels("No Finding"), _labels("Edema", "Pleural Effusion")])
    masks: list = []
    imgs = render_phantoms(labels, seed=2, size=48, masks=masks)
    np.testing.assert_array_equal(imgs, render_phantoms(labels, seed=2, size=48))
    assert [sorted(m) for m in masks] == [["Cardiomegaly"], [], ["Edema", "Pleural Effusion"]]
