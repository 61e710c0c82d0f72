"""Inference preprocessing that reproduces the training cache exactly (open_clip's `preprocess`).

A model never sees a raw file during training: `medflip data cache` decodes each image once to a
uint8 square (`resize` policy, `cache_size` px; see medflip.data.images.fit_square), and the trainer /
evaluator then resizes that square to the model's `image_size` and normalises it
(medflip.data.augment.normalize). Feeding an inference image through any other path (a plain square
resize, another normalisation) shows the model a geometry it was not trained on. So the policy is recorded
in the model's config.json at training time (`"preprocess"`), and `Preprocess` replays it:

    path / PIL image / numpy array / pydicom Dataset
        -> uint8 [cache_size, cache_size]         (the cache's reader: `to_uint8`)
        -> float [1, image_size, image_size]       ((x / 255 - mean) / std, bilinear + antialias resize)

`Preprocess(x)` of an image file equals, bit for bit, what evaluation reads for that file from a cache.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from medflip.data.augment import IMAGE_MEAN, IMAGE_STD, normalize
from medflip.data.images import _pil_to_uint8, _stretch, dicom_to_uint8, fit_square, load_square
from medflip.errors import UserError

RESIZE_MODES = ("fit-longer-side-pad-black",)


@dataclass
class PreprocessConfig:
    """How the training images were prepared; stored as "preprocess" in the model's config.json."""

    cache_size: int | None = (
        None  # side of the cached uint8 square (None: unknown, use the model's image_size)
    )
    resize: str = "fit-longer-side-pad-black"  # the cache's resize policy (medflip.data.images.fit_square)
    mean: float = 0.5  # x = (u8 / 255 - mean) / std
    std: float = 0.25

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PreprocessConfig:
        d = dict(d or {})
        unknown = sorted(set(d) - {"cache_size", "resize", "mean", "std"})
        if unknown:
            raise UserError(f"config.json 'preprocess' has unknown key(s) {unknown}")
        return cls(**d)


ImageLike = Any  # str | os.PathLike | PIL.Image.Image | np.ndarray | pydicom.Dataset | torch.Tensor


class Preprocess:
    """Callable: one image -> float tensor [1, image_size, image_size] (channel, height, width)."""

    def __init__(self, cfg: PreprocessConfig, image_size: int) -> None:
        if cfg.resize not in RESIZE_MODES:
            raise UserError(f"unknown resize mode {cfg.resize!r} in the model config; known: {RESIZE_MODES}")
        self.cfg = cfg
        self.image_size = int(image_size)
        self.cache_size = int(cfg.cache_size or image_size)

    def __repr__(self) -> str:
        return (
            f"Preprocess({self.cfg.resize} to {self.cache_size}px uint8, then {self.image_size}px, "
            f"(x/255 - {self.cfg.mean}) / {self.cfg.std})"
        )

    def to_uint8(self, image: ImageLike) -> np.ndarray:
        """Any supported input -> uint8 [cache_size, cache_size], exactly as `medflip data cache` stores it.

        Paths (JPEG, PNG 8/16-bit, DICOM) go through the cache's own reader. Arrays: uint8 as is; other
        integer types are stretched min..max (like 16-bit PNGs); floats in [0, 1] are scaled by 255, other
        floats stretched; [H, W, 3|4] is converted to luma. A pydicom Dataset goes through the same DICOM
        pipeline as a .dcm file (modality LUT, VOI LUT / window, MONOCHROME1 inversion).
        """
        size = self.cache_size
        if isinstance(image, (str, os.PathLike)):
            return load_square(Path(image), size)
        if isinstance(image, Image.Image):
            return fit_square(_pil_to_uint8(image), size)
        if type(image).__name__ in ("Dataset", "FileDataset") and hasattr(image, "pixel_array"):
            return fit_square(Image.fromarray(dicom_to_uint8(image)), size)
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        if isinstance(image, np.ndarray):
            a = image
            if a.ndim == 3 and a.shape[0] == 1:
                a = a[0]
            if a.ndim == 3 and a.shape[-1] == 1:
                a = a[..., 0]
            if a.ndim == 3 and a.shape[-1] in (3, 4):
                rgb = a[..., :3]
                rgb = rgb if rgb.dtype == np.uint8 else _to_u8(rgb, _stretch)
                return fit_square(Image.fromarray(np.ascontiguousarray(rgb)).convert("L"), size)
            if a.ndim != 2:
                raise UserError(f"image array must be [H, W], [H, W, 3] or [1, H, W], got shape {a.shape}")
            return fit_square(Image.fromarray(np.ascontiguousarray(_to_u8(a, _stretch))), size)
        raise UserError(
            f"cannot preprocess a {type(image).__name__}: pass a file path, a PIL image, a numpy array "
            "or a pydicom Dataset"
        )

    def normalize(self, u8: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 [S, S] or [B, S, S] -> float [1, size, size] or [B, 1, size, size] (evaluation's normalize)."""
        if (self.cfg.mean, self.cfg.std) != (IMAGE_MEAN, IMAGE_STD):
            raise UserError(f"unsupported normalisation mean={self.cfg.mean} std={self.cfg.std}")
        x = torch.as_tensor(np.asarray(u8, dtype=np.uint8))
        single = x.ndim == 2
        out = normalize(x.reshape(-1, 1, *x.shape[-2:]), self.image_size)
        return out[0] if single else out

    def __call__(self, image: ImageLike) -> torch.Tensor:
        return self.normalize(self.to_uint8(image))

    def batch(self, images: list[ImageLike]) -> torch.Tensor:
        """Many images -> [B, 1, size, size]."""
        if not images:
            return torch.zeros(0, 1, self.image_size, self.image_size)
        return self.normalize(np.stack([self.to_uint8(im) for im in images]))


def _to_u8(a: np.ndarray, stretch) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise UserError("image array has NaN or inf values")
        if a.size and a.min() >= 0.0 and a.max() <= 1.0:
            return np.rint(a * 255.0).astype(np.uint8)
    return stretch(a)
