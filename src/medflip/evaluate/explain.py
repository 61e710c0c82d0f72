"""Grounding figures: where a phrase points in a radiograph (`medflip explain`, the web page, the demo).

The map (medflip.model.grounding) lives on the patch grid (e.g. 14 x 14 for 224 px / 16 px patches); it is
upsampled bilinearly to the displayed image and drawn over it with a colour bar in cosine-similarity units
(minus the reference phrases' mean map: model/grounding.py says why).
The image is read by the same reader as the cache (PNG, JPEG, DICOM; same errors on bad files) and fitted
into the model's square input the same way (aspect kept, black padding), so what is shown is what the model saw.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from medflip.data.images import fit_square, open_grayscale
from medflip.model.grounding import Grounding, ground
from medflip.model.medflip import MedFLIP

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

DISPLAY_SIZE = 320  # pixels of the square drawn under the map
MAX_WORD_PANELS = 6  # "a short phrase": one panel per word up to this many words


def model_input(gray: np.ndarray | Image.Image, model: MedFLIP) -> tuple[torch.Tensor, np.ndarray]:
    """A grayscale image -> (model input [1, 1, S, S] as training prepared its images (`model.preprocess`),
    the displayed square uint8 [D, D], fitted the same way: aspect kept, black padding)."""
    im = gray if isinstance(gray, Image.Image) else Image.fromarray(np.asarray(gray, dtype=np.uint8))
    return model.preprocess(im).unsqueeze(0), fit_square(im, DISPLAY_SIZE)


def ground_file(
    model: MedFLIP, path: str | Path, text: str, reference: Sequence[str] | None = None
) -> tuple[Grounding, np.ndarray]:
    """Read a PNG / JPEG / DICOM file (ImageReadError on a bad one) and ground `text` in it
    (reference: see `medflip.model.grounding.ground`)."""
    x, shown = model_input(open_grayscale(path), model)
    return ground(model, x, text, reference), shown


def upsample(grid: torch.Tensor, size: int) -> np.ndarray:
    """[H_p, W_p] -> [size, size] float32, bilinear (a patch's value sits at the patch centre)."""
    up = F.interpolate(grid[None, None].float(), size=(size, size), mode="bilinear", align_corners=False)
    return up[0, 0].numpy()


def overlay_png(
    shown: np.ndarray, grid: torch.Tensor, vmin: float, vmax: float, alpha: float = 0.45
) -> bytes:
    """The radiograph with the map blended on top (jet colour map), as PNG bytes (the web page's heatmap)."""
    heat = upsample(grid, shown.shape[0])
    scaled = np.clip((heat - vmin) / max(vmax - vmin, 1e-6), 0, 1)
    rgb = matplotlib.colormaps["jet"](scaled)[..., :3]
    base = np.repeat(shown[..., None] / 255.0, 3, -1)
    out = ((1 - alpha) * base + alpha * rgb) * 255.0
    buf = io.BytesIO()
    Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def plot_grounding(
    g: Grounding,
    shown: np.ndarray,
    text: str,
    out_png: str | Path,
    title_extra: str = "",
    outline: np.ndarray | None = None,
) -> Path:
    """Main panel: the phrase's map over the radiograph with a colour bar; the phrase and the image-text
    similarity in the title. A short phrase (2..6 words) also gets one panel per word, on the same scale.
    outline: optional bool mask (any square size) drawn as a white contour, e.g. where a phantom's finding is."""
    panels = [("phrase", g.map)]
    if 1 < len(g.words) <= MAX_WORD_PANELS:
        panels += list(zip(g.words, g.word_maps))
    vals = torch.stack([m for _, m in panels])
    vmin, vmax = float(vals.min()), float(vals.max())
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels) + 0.8, 3.9), dpi=110, squeeze=False)
    im = None
    for ax, (name, grid) in zip(axes[0], panels):
        ax.imshow(shown, cmap="gray", vmin=0, vmax=255)
        im = ax.imshow(upsample(grid, shown.shape[0]), cmap="jet", alpha=0.45, vmin=vmin, vmax=vmax)
        if outline is not None:
            ext = (-0.5, shown.shape[1] - 0.5, shown.shape[0] - 0.5, -0.5)
            ax.contour(
                outline.astype(float),
                levels=[0.5],
                colors="white",
                linewidths=1.0,
                extent=ext,
                origin="upper",
            )
        ax.set_title("mean over words" if name == "phrase" else f'"{name}"', fontsize=9)
        ax.axis("off")
    fig.colorbar(
        im,
        ax=axes[0].tolist(),
        fraction=0.046 / len(panels) ** 0.5,
        label="patch-word cosine similarity\n(minus the reference phrases' mean)" if g.reference else "patch-word cosine similarity",
    )
    fig.suptitle(f'"{text}": image-text similarity {g.similarity:.3f}{title_extra}', fontsize=10)
    fig.savefig(out_png, bbox_inches="tight")
    plt.close(fig)
    return Path(out_png)


def inside_outside(grid: torch.Tensor, mask: np.ndarray) -> tuple[float, float, bool]:
    """Score a map against a finding's mask [S, S]: (mean inside, mean outside, pointing-game hit: the map's
    maximum, upsampled to the mask, falls inside it)."""
    heat = upsample(grid, mask.shape[0])
    inside, outside = float(heat[mask].mean()), float(heat[~mask].mean())
    return inside, outside, bool(mask.reshape(-1)[int(heat.argmax())])
