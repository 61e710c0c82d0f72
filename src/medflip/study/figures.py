"""The study's PNG figures (paper Fig. 1 and 3 analogues, data efficiency, zero-shot reliability)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medflip.evaluate.plots import plt, save_figure
from medflip.study import stats
from medflip.study.aggregate import Aggregate, Metric, label


def plot_time(agg: Aggregate, methods: list[str], out: Path) -> Path | None:
    """Zero-shot AUROC and 10%-probe balanced accuracy vs training clock, one line per method (seed 0)."""
    curves = {m: r["curve"] for m in methods for r in agg.group(m)[:1] if r.get("curve")}
    if not curves:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    for m, pts in curves.items():
        x = [p["elapsed_s"] / 60 for p in pts]
        axes[0].plot(x, [p["zeroshot_auroc"] for p in pts], marker="o", ms=3, label=label(m))
        axes[1].plot(x, [p["probe10_bal_acc"] for p in pts], marker="o", ms=3, label=label(m))
    axes[0].set_ylabel("zero-shot AUROC (pneumonia vs normal)")
    axes[1].set_ylabel("3-class probe balanced accuracy (10% labels)")
    for ax in axes:
        ax.set_xlabel(f"training time (minutes of {agg.cfg.budget_clock} clock, one thread)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle("metric vs training time (seed 0, test split)", fontsize=10)
    return save_figure(fig, out)


def plot_label_fractions(
    agg: Aggregate, methods: list[str], fractions: list[float], out: Path
) -> Path | None:
    """3-class probe balanced accuracy vs label fraction (mean +- sd over seeds)."""
    fig, ax = plt.subplots(figsize=(5.8, 3.8), dpi=120)
    drawn = False
    for i, m in enumerate(methods):
        s = [agg.summary(m, Metric("probe", "bal_acc", f)) for f in fractions]
        if any(v is None for v in s):
            continue
        x = np.array(fractions) * 100 * (1 + 0.03 * (i - len(methods) / 2))  # small dodge
        ax.errorbar(
            x,
            [v["mean"] for v in s],
            yerr=[np.nan_to_num(v["sd"]) for v in s],
            marker="o",
            ms=3,
            capsize=2,
            label=label(m),
        )
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_xticks([f * 100 for f in fractions], [f"{f * 100:g}%" for f in fractions])
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("balanced accuracy (mean ± sd over seeds)")
    ax.set_title("linear probe, normal / bacterial / viral (test split)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out)


def plot_pretrain_fractions(
    agg: Aggregate, methods: list[str], fractions: list[float], out: Path
) -> Path | None:
    """Probe balanced accuracy (10% labels) and zero-shot AUROC vs fraction of pre-training images."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    drawn = False
    for m in methods:
        for ax, metric in zip(
            axes, (Metric("probe", "bal_acc", 0.1), Metric("zeroshot", "auroc")), strict=True
        ):
            pts = [(f, agg.summary(m, metric, f)) for f in fractions]
            pts = [(f, s) for f, s in pts if s is not None]
            if not pts:
                continue
            ax.errorbar(
                [f * 100 for f, _ in pts],
                [s["mean"] for _, s in pts],
                yerr=[np.nan_to_num(s["sd"]) for _, s in pts],
                marker="o",
                ms=3,
                capsize=2,
                label=label(m),
            )
            ax.set_ylabel(metric.label)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks([f * 100 for f in fractions], [f"{f * 100:g}%" for f in fractions])
        ax.set_xlabel("pre-training images (% of the train split)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("data efficiency: equal training time, fewer images (mean ± sd over seeds)", fontsize=10)
    return save_figure(fig, out)


def plot_reliability(agg: Aggregate, methods: list[str], out: Path) -> Path | None:
    """Reliability diagram of the zero-shot softmax P(pneumonia) on test, pooled over seeds."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2), dpi=120)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect calibration")
    drawn = False
    for m in methods:
        rs = agg.group(m)
        if not rs:
            continue
        y = np.concatenate([r["zeroshot"]["test"]["y"] for r in rs])
        p = np.concatenate([r["zeroshot"]["test"]["probs"][:, 1] for r in rs])
        e, bins = stats.ece(y, p)
        ax.plot(
            [b["mean_p"] for b in bins],
            [b["observed"] for b in bins],
            marker="o",
            ms=3,
            label=f"{label(m)} (ECE {e:.3f})",
        )
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("zero-shot P(pneumonia) (bin mean)")
    ax.set_ylabel("observed share of pneumonia")
    ax.set_title("zero-shot reliability (test split, all seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out)
