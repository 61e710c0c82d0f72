"""Render docs/img/phantoms.png: one row per finding, a few random synthetic phantoms each.

Usage: python scripts/render_phantom_sheet.py [--size 128] [--per-row 6] [--out docs/img/phantoms.png]
The images are synthetic and for demonstration only (not medical data).
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from medflip.demo.phantom import render_phantoms
from medflip.observations import NUM_OBSERVATIONS, OBSERVATIONS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--per-row", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/img/phantoms.png")
    args = ap.parse_args()
    n = args.per_row
    fig, axes = plt.subplots(NUM_OBSERVATIONS, n, figsize=(1.6 * n + 1.6, 1.6 * NUM_OBSERVATIONS))
    for k, name in enumerate(OBSERVATIONS):
        labels = np.zeros((n, NUM_OBSERVATIONS), dtype=np.float32)
        labels[:, k] = 1.0
        imgs = render_phantoms(labels, seed=args.seed * 1000 + k, size=args.size)
        for j in range(n):
            ax = axes[k, j]
            ax.imshow(imgs[j], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[k, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"medflip synthetic phantoms ({args.size}px) - demonstration only, not medical data")
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
