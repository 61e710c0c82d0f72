"""PNG plots people would rather look at than read: loss curves and confusion matrices."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, out_png) -> Path:
    """The one ending of every plot: tight layout, write the PNG, free the figure (pyplot keeps every open
    figure alive until closed). Returns the path written."""
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return Path(out_png)


def plot_loss_curve(log_csv: Path, out_png: Path) -> Path:
    """Total loss and each term against step, from a run's log.csv."""
    with Path(log_csv).open() as f:
        rows = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    steps = [int(r["step"]) for r in rows]
    for key in ("loss", "sm", "neg", "svd", "recon", "mlm"):
        vals = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
        if len(vals) == len(steps) and vals:
            ax.plot(steps, vals, label=key, lw=2 if key == "loss" else 1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("pre-training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out_png)


def plot_confusion(
    matrix: list[list[int]], classes: list[str], out_png: Path, title: str = "zero-shot"
) -> Path:
    """Row-normalised confusion matrix with counts in the cells (rows: true class, columns: predicted)."""
    m = np.asarray(matrix, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.5, 1.0 * len(classes) + 2), dpi=120)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                int(m[i, j]),
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save_figure(fig, out_png)
