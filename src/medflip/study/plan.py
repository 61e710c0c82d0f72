"""The reproduction study's plan: methods, cells, and the exact `medflip pretrain` command of each cell.

A *cell* is one pre-training run (method x seed x fraction of the pre-training images) plus its evaluation.
Every cell has its own folder under `out/cells/`; a cell is finished when its `result.json` exists, so a
killed study resumes where it stopped (a half-trained cell continues from its last checkpoint).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from medflip.errors import UserError

# name -> (label, what, pretrain flags). Every method shares the model, data, optimiser and CPU-time budget.
METHODS: dict[str, tuple[str, str, list[str]]] = {
    "medclip": ("MedCLIP objective", "mask 0, no SVD", ["--train.mask_ratio", "0", "--loss.beta_svd", "0"]),
    "medflip": (
        "MedFLIP",
        "mask 0.5 + SVD (beta 0.1)",
        ["--train.mask_ratio", "0.5", "--loss.beta_svd", "0.1"],
    ),
    "medflip75": (
        "MedFLIP 0.75",
        "mask 0.75 + SVD",
        ["--train.mask_ratio", "0.75", "--loss.beta_svd", "0.1"],
    ),
    "nosvd": ("no SVD", "mask 0.5, beta 0", ["--train.mask_ratio", "0.5", "--loss.beta_svd", "0"]),
    "textmask": (
        "+ text mask (MLM)",
        "MedFLIP + 15% text tokens masked, MLM head",
        [
            "--train.mask_ratio",
            "0.5",
            "--loss.beta_svd",
            "0.1",
            "--train.text_mask_ratio",
            "0.15",
            "--loss.mlm_weight",
            "1",
        ],
    ),
    "mae": (
        "+ MAE recon",
        "MedFLIP + MAE reconstruction decoder",
        ["--train.mask_ratio", "0.5", "--loss.beta_svd", "0.1", "--loss.recon_weight", "1"],
    ),
    "unmasked": (
        "+ unmasked tuning",
        "MedFLIP, last 5% of the budget unmasked",
        ["--train.mask_ratio", "0.5", "--loss.beta_svd", "0.1", "--train.unmasked_fraction", "0.05"],
    ),
}


@dataclass
class StudyConfig:
    """Defaults: the CPU study of docs/reproduction.md (ViT-Ti/16 at 128 px = 64 patches, 2 CPU-minutes per run)."""

    cache: str = "runs/study/cache128"  # image cache with train / val / test splits (`medflip data cache`)
    texts: str = "iu"  # decoupled text corpus: iu or a CSV/JSONL with a `report` column
    out: str = "runs/study"
    methods: tuple[str, ...] = tuple(METHODS)
    seeds: tuple[int, ...] = (0, 1, 2)
    # pre-training image fractions (data efficiency) for pretrain_fraction_methods; 1.0 is the main cell
    pretrain_fractions: tuple[float, ...] = (0.1, 0.25, 0.5)
    pretrain_fraction_methods: tuple[str, ...] = ("medclip", "medflip")
    budget_min: float = 2.0  # training budget per run, in minutes of the clock below
    budget_clock: str = "cpu"  # cpu: process CPU time (one-thread runs; immune to other users' load) | wall
    image_size: int = 128
    vision_size: str = "tiny"
    embed_dim: int = 512
    batch_size: int = 32
    lr: float = 3e-4
    warmup_steps: int = 50
    precision: str = "bf16"  # bf16 autocast (AVX512-BF16 CPUs, CUDA) | fp32 | auto
    text_freeze_layers: int = 6  # 6 = the whole MiniLM tower locked and memoised
    ckpt_every: int = 50  # seed-0 full-data cells: checkpoints feed the metric-vs-time figure
    ckpt_every_other: int = 100  # other cells: checkpoints only to resume a killed run (the last one kept)
    prune_checkpoints: bool = True  # delete a cell's checkpoints once it is evaluated (run/model stays)
    curve_checkpoints: int = 4  # checkpoints evaluated per seed-0 run for that figure (0: none)
    # evaluation
    probe_column: str = "subtype"  # manifest column of the 3-class probe task; "labels": label columns, one positive
    probe_classes: tuple[str, ...] = ("normal", "bacteria", "virus")
    probe_fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    finetune_fraction: float = 0.1
    finetune_methods: tuple[str, ...] = ("medclip", "medflip")
    finetune_epochs: int = 5
    positive: str = "Pneumonia"  # zero-shot / retrieval: this vs normal
    retrieval_holdout: float = 0.3  # share of the reports with a Pneumonia sentence held out for retrieval
    n_boot: int = 1000
    jobs: int = 2  # cells run side by side (each with threads intra-op threads)
    threads: int = 1
    device: str = "cpu"

    def key(self) -> str:
        """Hash of everything that changes a cell's numbers (not out / jobs / which cells are listed)."""
        skip = {
            "out",
            "prune_checkpoints",
            "jobs",
            "methods",
            "seeds",
            "pretrain_fractions",
            "pretrain_fraction_methods",
            "n_boot",
        }
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Cell:
    method: str
    seed: int
    fraction: float = 1.0  # of the pre-training images

    @property
    def name(self) -> str:
        return f"{self.method}_f{self.fraction:g}_s{self.seed}"

    def folder(self, cfg: StudyConfig) -> Path:
        return Path(cfg.out) / "cells" / self.name


def cells(cfg: StudyConfig) -> list[Cell]:
    """All cells in run order: the methods seed-major (every method's seed 0, then seed 1, ...: a study cut short
    still covers every method, and second seeds come before the data-efficiency cells), then those."""
    unknown = [m for m in (*cfg.methods, *cfg.pretrain_fraction_methods) if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    out = [Cell(m, seed) for seed in cfg.seeds for m in cfg.methods]
    out += [
        Cell(m, seed, f)
        for seed in cfg.seeds
        for m in cfg.pretrain_fraction_methods
        for f in cfg.pretrain_fractions
        if f != 1.0
    ]
    return out


def text_corpus_path(cfg: StudyConfig) -> Path:
    return Path(cfg.out) / "texts_train.csv"


def retrieval_pool_path(cfg: StudyConfig) -> Path:
    return Path(cfg.out) / "retrieval_pool.csv"


def is_curve_cell(cfg: StudyConfig, cell: Cell) -> bool:
    """The cells whose checkpoints make the metric-vs-time figure: seed 0 (the first seed), all images."""
    return cell.seed == min(cfg.seeds) and cell.fraction == 1.0 and cfg.curve_checkpoints > 0


def pretrain_argv(cfg: StudyConfig, cell: Cell) -> list[str]:
    """`medflip pretrain` arguments of a cell (the exact command the study runs)."""
    curve = is_curve_cell(cfg, cell)
    argv = [
        "pretrain",
        "--data.cache",
        cfg.cache,
        "--data.texts",
        str(text_corpus_path(cfg)),
        "--data.batch_size",
        str(cfg.batch_size),
        "--data.fraction",
        f"{cell.fraction:g}",
        "--model.vision.size",
        cfg.vision_size,
        "--model.vision.image_size",
        str(cfg.image_size),
        "--model.embed_dim",
        str(cfg.embed_dim),
        "--model.text.freeze_layers",
        str(cfg.text_freeze_layers),
        "--optim.lr",
        str(cfg.lr),
        "--optim.warmup_steps",
        str(cfg.warmup_steps),
        "--train.steps",
        "1000000",
        "--train.time_budget_min",
        f"{cfg.budget_min:g}",
        "--train.budget_clock",
        cfg.budget_clock,
        "--train.precision",
        cfg.precision,
        "--train.device",
        cfg.device,
        "--train.ckpt_every",
        str(cfg.ckpt_every if curve else cfg.ckpt_every_other),
        "--train.keep_checkpoints",
        "0" if curve else "1",
        "--train.log_every",
        "10",
        "--train.seed",
        str(cell.seed),
        "--train.out",
        str(cell.folder(cfg) / "run"),
        "--no-progress",
        *METHODS[cell.method][2],
    ]
    return argv


def command_line(argv: list[str], threads: int = 1) -> str:
    return f"OMP_NUM_THREADS={threads} medflip " + " ".join(shlex.quote(a) for a in argv)
