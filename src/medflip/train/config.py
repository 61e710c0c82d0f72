"""Pre-training configuration: every default works (`medflip pretrain --data.cache DIR` is a full run)."""

from __future__ import annotations

from dataclasses import dataclass, field

from medflip.data.augment import AugmentConfig
from medflip.losses import LossConfig
from medflip.model.medflip import ModelConfig
from medflip.observations import COMPETITION_TASKS


@dataclass
class DataConfig:
    cache: str = ""  # image cache folder written by `medflip data cache`
    split: str = "train"
    fraction: float = 1.0  # pre-train on a seeded random fraction of the split (data-efficiency runs)
    texts: str = "paired"  # paired (the images' own reports) | iu (bundled IU reports) | path to CSV/JSONL
    text_column: str = "report"  # column of `texts` holding report text (CSV/JSONL corpora)
    text_mode: str = "sentence"  # sentence: one sampled sentence per draw | report: the whole report
    # >0 (decoupled text only): the text stream becomes N sentences positive for each of balance_classes plus
    # N at random, so rare findings are seen as often as common ones (TextCorpus.balanced_sentences)
    balance_text: int = 0
    balance_classes: tuple[str, ...] = COMPETITION_TASKS  # observation names, comma-separated on the CLI
    batch_size: int = 32
    # evaluation caches (comma-separated on the CLI): warn when they share patients with the training split
    eval_caches: tuple[str, ...] = ()
    augment: bool = True
    augment_cfg: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class OptimConfig:
    lr: float = 5e-4  # vision tower, projections, temperature
    text_lr: float = 5e-5  # pretrained text tower: a smaller step keeps its language knowledge
    weight_decay: float = 0.05  # not applied to norms, biases, embeddings' tokens, temperature
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0  # max global grad norm (0 disables)


@dataclass
class TrainConfig:
    steps: int = 1000
    mask_ratio: float = 0.5  # FLIP image masking (0: the MedCLIP setting)
    unmasked_steps: int = 0  # FLIP "unmasked tuning": the last N steps run with mask_ratio 0
    # the same by time: once this fraction of time_budget_min is left, steps run unmasked (equal-budget studies)
    unmasked_fraction: float = 0.0
    text_mask_ratio: float = 0.0  # MLM-style text masking for the "text mask" ablation
    log_every: int = 10
    ckpt_every: int = 500
    keep_checkpoints: int = 0  # 0 keeps all (time-efficiency evaluation reads them)
    time_budget_min: float = 0.0  # stop (and checkpoint) after this much training wall-clock; 0 = no limit
    # wall: elapsed wall-clock | cpu: this process's CPU time (fair equal budgets for one-thread runs on a shared
    # machine: other users' load does not shrink a run's budget)
    budget_clock: str = "wall"
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 elsewhere) | bf16 | fp32
    seed: int = 0
    out: str = "runs/pretrain"
    # Validation during training (rank 0; its time is not counted in elapsed_s / time_budget_min):
    # zero-shot metrics every N steps (and at the end) on eval_cache [eval_split], logged beside the loss.
    eval_every: int = 0  # 0: off
    eval_cache: str = ""  # cache with the validation split (default: data.cache)
    eval_split: str = "val"
    eval_task: str = "chexpert5"  # chexpert5 | binary (with eval_positive)
    eval_positive: str = ""  # positive class of a binary validation task (e.g. Pneumonia)
    eval_prompts: str = ""  # JSON/YAML prompt file (class -> prompts); default: the built-in sets


@dataclass
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
