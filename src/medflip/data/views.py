"""Views of image data that read lazily: a row subset of a memory-mapped array (`IndexedImages`) and the
seeded subset of a cache split that data-efficiency runs pre-train on (`subset_cache`)."""

from __future__ import annotations

import numpy as np

from medflip.data.cache import ImageCache
from medflip.errors import UserError


class IndexedImages:
    """A row subset of an image array / memory map without copying it: `view[i:j]` and `view[idx]` read
    only the rows asked for (in sorted order, which is what a memory map reads fastest)."""

    def __init__(self, images: np.ndarray, index: np.ndarray):
        self.images = images
        self.index = np.asarray(index, dtype=np.int64)
        self.shape = (len(self.index), *images.shape[1:])
        self.dtype = images.dtype

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key) -> np.ndarray:
        rows = self.index[key]
        if np.ndim(rows) == 0:
            return np.asarray(self.images[int(rows)])
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self.images.shape[1:]), dtype=self.images.dtype)
        out[order] = self.images[rows[order]]
        return out


def subset_cache_indices(n_images: int, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random `fraction` of a cache split's n_images (at least one image).

    Nested: for one seed the 10% subset is inside the 25% subset, which is inside 50% and 100%.
    """
    if not 0 < fraction <= 1:
        raise UserError(f"data.fraction must be in (0, 1], got {fraction}")
    if n_images <= 0:
        return np.zeros(0, np.int64)
    k = max(1, int(round(fraction * n_images)))
    if k >= n_images:
        return np.arange(n_images, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).permutation(n_images)[:k]).astype(np.int64)


def subset_cache(cache, fraction: float, seed: int = 0):
    """The seeded `fraction` of an ImageCache split (images read lazily, rows and labels subset alike),
    for data-efficiency pre-training (`medflip pretrain --data.fraction F`). fraction 1: the cache itself."""
    idx = subset_cache_indices(len(cache), fraction, seed)
    if len(idx) == len(cache):
        return cache
    rows = cache.rows.iloc[idx].reset_index(drop=True)
    return ImageCache(images=IndexedImages(cache.images, idx), rows=rows, size=cache.size, split=cache.split)
