"""Pre-training configuration: every default works (`medflip pretrain --data.cache DIR` is a full run)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from medflip.data.augment import AugmentConfig
from medflip.errors import UserError
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
    # auto: PyTorch's attention kernel | math: its plain-math kernel on CPU (faster for a few tokens, see
    # medflip.runtime.attention_kernel; the demo uses it)
    attention: str = "auto"
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

    def resolved(self) -> PretrainConfig:
        """A copy with the settings that follow from others filled in, after checking they fit together.

        - the MAE decoder exists when loss.recon_weight > 0; the MLM head when loss.mlm_weight > 0 or
          train.text_mask_ratio > 0 (so `pretrain()` callers and the CLI build the same model);
        - a loss weight > 0 whose term could never run is an error, not a silently skipped term;
        - identity (CLIP) targets need paired data: with decoupled text, image i and text i are unrelated.
        Idempotent: resolving a resolved config changes nothing.
        """
        cfg = copy.deepcopy(self)
        lc, tc = cfg.loss, cfg.train
        if lc.recon_weight > 0:
            if tc.mask_ratio <= 0:
                raise UserError(
                    "loss.recon_weight > 0 reconstructs masked patches: it needs train.mask_ratio > 0"
                )
            cfg.model.reconstruction_decoder = True
        if lc.mlm_weight > 0 and tc.text_mask_ratio <= 0:
            raise UserError("loss.mlm_weight > 0 predicts masked words: it needs train.text_mask_ratio > 0")
        if lc.mlm_weight > 0 or tc.text_mask_ratio > 0:
            cfg.model.mlm_head = True
        if lc.targets not in ("labels", "identity"):
            raise UserError(f"loss.targets must be 'labels' or 'identity', got {lc.targets!r}")
        if lc.targets == "identity" and cfg.data.texts != "paired":
            raise UserError(
                "loss.targets identity (CLIP) treats image i and text i as the only positive pair: it needs "
                f"paired data (--data.texts paired), not decoupled text ({cfg.data.texts!r})"
            )
        if not 0 <= tc.mask_ratio < 1:
            raise UserError(f"train.mask_ratio must be in [0, 1), got {tc.mask_ratio}")
        if cfg.data.batch_size < 1:
            raise UserError(f"data.batch_size must be >= 1, got {cfg.data.batch_size}")
        return cfg
