"""Data and time efficiency of pre-training (paper Fig. 1; docs/evaluation.md): zero-shot accuracy against the number
of pre-training images and against training wall-clock, several runs (e.g. masked vs unmasked) per plot.

Everything is read from run folders written by `medflip pretrain`::

    run/config.json                       the run's PretrainConfig (data.cache, data.split, data.fraction, ...)
    run/checkpoints/step_*/state.json     elapsed_s = training wall-clock up to that checkpoint
    run/checkpoints/step_*/               a loadable model folder
    run/model/                            the final model

- time efficiency: every checkpoint of each run is evaluated zero-shot; x = elapsed_s.
- data efficiency: the final model of each run (pre-trained on a subset) is evaluated zero-shot;
  x = number of pre-training images, given (--samples) or derived from the run's config: the size of its
  cache split times data.fraction, exactly as `subset_cache_indices` draws it.

Runs are named `LABEL=DIR`; without a label, runs are named by their masking ("masked 0.5" / "unmasked"),
so masked and unmasked runs become the two lines of the plot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medflip.data.views import IndexedImages, subset_cache, subset_cache_indices
from medflip.errors import UserError
from medflip.evaluate.plots import plt, save_figure
from medflip.evaluate.zeroshot import encode_images, zero_shot
from medflip.model.medflip import MedFLIP, read_model_config
from medflip.train.checkpoint import latest_checkpoint, list_checkpoints

__all__ = ["IndexedImages", "subset_cache", "subset_cache_indices"]


@dataclass
class Run:
    label: str
    path: Path
    config: dict = field(default_factory=dict)

    def checkpoints(self) -> list[Path]:
        return list_checkpoints(self.path)

    def final_model(self) -> Path | None:
        if (self.path / "model" / "config.json").is_file():
            return self.path / "model"
        return latest_checkpoint(self.path)


def default_label(config: dict, path: Path) -> str:
    """ "masked R" / "unmasked" from the run's train.mask_ratio; the folder name when the config has none."""
    train = config.get("train", {}) if isinstance(config, dict) else {}
    if not isinstance(train, dict) or "mask_ratio" not in train:
        return path.name
    r = float(train["mask_ratio"] or 0.0)
    return f"masked {r:g}" if r > 0 else "unmasked"


def parse_runs(specs: list[str]) -> list[Run]:
    """`LABEL=DIR` or `DIR` -> runs (folders checked; config.json read when present)."""
    runs = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or Path(spec).exists():
            label, path = "", spec
        p = Path(path)
        if not p.is_dir():
            raise UserError(f"run folder not found: {p}")
        cfg_path = p / "config.json"
        config: dict = {}
        if cfg_path.is_file():
            try:
                config = json.loads(cfg_path.read_text())
            except json.JSONDecodeError as e:
                raise UserError(f"{cfg_path} is not valid JSON: {e}") from e
            if config.get("architecture") == "MedFLIP":
                raise UserError(
                    f"{p} is a model folder, not a run folder (pass the folder `medflip pretrain` wrote)"
                )
        runs.append(Run(label or default_label(config, p), p, config))
    return runs


def pretrain_samples(run: Run) -> int:
    """Number of pre-training images of a run, from its config: size of data.split of data.cache x data.fraction."""
    data = run.config.get("data", {})
    cache, split = data.get("cache", ""), data.get("split", "train")
    if not cache:
        raise UserError(f"{run.path}: no config.json with data.cache; pass --samples")
    meta_path = Path(cache) / "meta.json"
    if not meta_path.is_file():
        meta_path = (run.path / cache / "meta.json").resolve()
    if not meta_path.is_file():
        raise UserError(f"{run.path}: its cache {cache!r} is not found from here; pass --samples")
    n = int(json.loads(meta_path.read_text()).get("splits", {}).get(split, 0))
    seed = int(run.config.get("train", {}).get("seed", 0))
    return len(subset_cache_indices(n, float(data.get("fraction", 1.0)), seed))


def _elapsed(ckpt: Path) -> tuple[int, float]:
    try:
        state = json.loads((ckpt / "state.json").read_text())
        return int(state["step"]), float(state["elapsed_s"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{ckpt}/state.json has no step / elapsed_s ({e})") from e


def thin(items: list, k: int) -> list:
    """At most k items, evenly spaced, always keeping the first and the last (k <= 0: all)."""
    if k <= 0 or len(items) <= k:
        return list(items)
    if k == 1:
        return [items[-1]]
    picks = sorted({int(round(i)) for i in np.linspace(0, len(items) - 1, k)})
    return [items[i] for i in picks]


def validate_time_runs(runs: list[Run], max_checkpoints: int = 0) -> dict[str, list[tuple[Path, int, float]]]:
    """(checkpoint, step, elapsed_s) per run, all model folders checked; raises before any model is loaded."""
    plan = {}
    for run in runs:
        ckpts = run.checkpoints()
        if not ckpts:
            raise UserError(
                f"{run.path} has no checkpoints (checkpoints/step_*/state.json); is it a pretrain run folder?"
            )
        items = []
        for c in thin(ckpts, max_checkpoints):
            read_model_config(c)
            items.append((c, *_elapsed(c)))
        if run.label in plan:
            raise UserError(f"two time-efficiency runs are labelled {run.label!r}: name them LABEL=DIR")
        plan[run.label] = items
    return plan


def validate_data_runs(runs: list[Run], samples: list[int] | None) -> list[tuple[Run, Path, int]]:
    if samples and len(samples) != len(runs):
        raise UserError(f"--samples has {len(samples)} values for {len(runs)} --data-runs")
    plan = []
    for i, run in enumerate(runs):
        model = run.final_model()
        if model is None:
            raise UserError(f"{run.path} has neither model/ nor a checkpoint")
        read_model_config(model)
        n = int(samples[i]) if samples else pretrain_samples(run)
        if n <= 0:
            raise UserError(f"{run.path}: number of pre-training samples must be > 0, got {n}")
        plan.append((run, model, n))
    return plan


# ------------------------------------------------------------------------------------------ evaluation
def zero_shot_model(
    model_dir: Path,
    images,
    y: np.ndarray,
    prompts: dict,
    device,
    batch_size: int = 64,
    n_boot: int = 200,
    seed: int = 0,
) -> dict:
    """Zero-shot metrics of one saved model on uint8 images [N, H, W] (prompts dropped from the result)."""
    model = MedFLIP.from_pretrained(model_dir, map_location=device).eval()
    emb = encode_images(model, images, batch_size=batch_size)
    m = zero_shot(model, None, y, prompts, image_embeds=emb, n_boot=n_boot, seed=seed)
    m.pop("prompts", None)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return m


def _point(m: dict) -> dict:
    return {k: m[k] for k in ("accuracy", "macro_f1", "auroc", "ci95", "n")}


def time_efficiency(
    plan, images, y, prompts, device, batch_size=64, n_boot=200, seed=0, progress=False
) -> dict:
    runs = []
    for label, items in plan.items():
        points = []
        for ckpt, step, elapsed in items:
            m = zero_shot_model(ckpt, images, y, prompts, device, batch_size, n_boot, seed)
            points.append({"checkpoint": str(ckpt), "step": step, "elapsed_s": elapsed, **_point(m)})
            if progress:
                print(f"time {label} step {step} ({elapsed / 60:.1f} min): accuracy {m['accuracy']:.3f}")
        runs.append({"label": label, "run": str(items[0][0].parent.parent), "points": points})
    return {"runs": runs}


def data_efficiency(
    plan, images, y, prompts, device, batch_size=64, n_boot=200, seed=0, progress=False
) -> dict:
    points = []
    for run, model_dir, n in plan:
        m = zero_shot_model(model_dir, images, y, prompts, device, batch_size, n_boot, seed)
        points.append(
            {"label": run.label, "run": str(run.path), "model": str(model_dir), "samples": n, **_point(m)}
        )
        if progress:
            print(f"data {run.label} {n} images: accuracy {m['accuracy']:.3f}")
    points.sort(key=lambda p: (p["label"], p["samples"]))
    return {"points": points}


# ------------------------------------------------------------------------------------------ outputs
def _ci(p: dict, key: str) -> str:
    lo, hi = p["ci95"][key]
    return f"{p[key]:.3f} ({lo:.3f}-{hi:.3f})"


def time_table(result: dict) -> str:
    lines = [
        "| run | step | wall-clock (min) | accuracy (95% CI) | macro-F1 | AUROC |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        for p in r["points"]:
            lines.append(
                f"| {r['label']} | {p['step']} | {p['elapsed_s'] / 60:.2f} | {_ci(p, 'accuracy')} "
                f"| {p['macro_f1']:.3f} | {p['auroc']:.3f} |"
            )
    return "\n".join(lines)


def data_table(result: dict) -> str:
    lines = [
        "| run | pre-training images | accuracy (95% CI) | macro-F1 | AUROC |",
        "|---|---|---|---|---|",
    ]
    for p in result["points"]:
        lines.append(
            f"| {p['label']} | {p['samples']} | {_ci(p, 'accuracy')} | {p['macro_f1']:.3f} | {p['auroc']:.3f} |"
        )
    return "\n".join(lines)


def _series_plot(
    series: dict[str, tuple[list, list, list, list]], xlabel: str, title: str, out_png, logx=False
):
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for label, (x, y, lo, hi) in series.items():
        y, lo, hi = (np.asarray(v, dtype=float) for v in (y, lo, hi))
        lo, hi = np.where(np.isnan(lo), y, lo), np.where(np.isnan(hi), y, hi)
        if len(x) >= 4:  # many points (checkpoints): a band
            (line,) = ax.plot(x, y, marker="o", ms=4, label=label)
            ax.fill_between(x, lo, hi, alpha=0.15, color=line.get_color())
        else:  # a few points (subset runs): error bars
            ax.errorbar(x, y, yerr=np.stack([y - lo, hi - y]).clip(min=0), marker="o", capsize=3, label=label)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("zero-shot accuracy (95% CI)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out_png)


def plot_time(result: dict, out_png, title: str = "time efficiency") -> Path:
    longest = max((p["elapsed_s"] for r in result["runs"] for p in r["points"]), default=0.0)
    unit, div = ("h", 3600.0) if longest > 3 * 3600 else ("min", 60.0)
    series = {
        r["label"]: (
            [p["elapsed_s"] / div for p in r["points"]],
            [p["accuracy"] for p in r["points"]],
            [p["ci95"]["accuracy"][0] for p in r["points"]],
            [p["ci95"]["accuracy"][1] for p in r["points"]],
        )
        for r in result["runs"]
    }
    return _series_plot(series, f"pre-training wall-clock ({unit})", title, out_png)


def plot_data(result: dict, out_png, title: str = "data efficiency") -> Path:
    series: dict[str, tuple[list, list, list, list]] = {}
    for p in result["points"]:
        s = series.setdefault(p["label"], ([], [], [], []))
        s[0].append(p["samples"])
        s[1].append(p["accuracy"])
        s[2].append(p["ci95"]["accuracy"][0])
        s[3].append(p["ci95"]["accuracy"][1])
    xs = [p["samples"] for p in result["points"]]
    logx = bool(xs) and max(xs) / max(min(xs), 1) >= 20
    return _series_plot(series, "pre-training images", title, out_png, logx=logx)
