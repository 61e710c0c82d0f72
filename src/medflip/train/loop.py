"""The pre-training loop: batch -> model -> loss -> step, with logging and step-exact checkpoints."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from medflip.data.streams import Batch, DecoupledBatches
from medflip.errors import UserError
from medflip.losses import contrastive_losses, soft_targets, svd_loss
from medflip.model.medflip import MedFLIP
from medflip.train.checkpoint import load_model_state, load_trainer_state, save_checkpoint
from medflip.train.config import PretrainConfig
from medflip.train.distributed import gather_no_grad, gather_with_grad, init_distributed
from medflip.train.rundir import open_run

LOG_COLUMNS = [
    "step",
    "epoch",
    "elapsed_s",
    "lr",
    "loss",
    "sm",
    "neg",
    "svd",
    "recon",
    "mlm",
    "logit_scale",
    "pairs_per_s",
    "val_accuracy",  # validation during training (train.eval_every): blank on other steps
    "val_macro_f1",
    "val_auroc",
]


class TrainingDiverged(UserError):
    """The loss became NaN or inf; the last good checkpoint is kept untouched."""


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CUDA by default; fp32 on CPU (CPU bf16 matmuls are slow on most CPUs)."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if precision not in ("auto", "bf16", "fp32"):
        raise UserError(f"train.precision must be auto, bf16 or fp32, got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()


def build_optimizer(model: MedFLIP, cfg) -> torch.optim.AdamW:
    """AdamW with four groups: {vision+heads, text} x {decay, no decay}.

    No weight decay on 1-d parameters (norms, biases), the temperature, and token/position embeddings:
    shrinking those toward zero has no regularising meaning.
    """
    no_decay_names = ("logit_scale", "pos_embed", "cls_token", "mask_token")
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_text = name.startswith("text.") or name.startswith("mlm.")
        decay = p.ndim >= 2 and not any(k in name for k in no_decay_names)
        groups.setdefault((is_text, decay), []).append(p)
    param_groups = [
        {
            "params": ps,
            "lr": cfg.text_lr if is_text else cfg.lr,
            "weight_decay": cfg.weight_decay if decay else 0.0,
        }
        for (is_text, decay), ps in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float = 0.0, time_fraction=None):
    """LR multiplier: linear warmup to 1, then cosine to min_ratio at total_steps.

    With a wall-clock budget, `time_fraction()` (elapsed / budget) also drives the cosine: progress is the
    larger of the two, so every run ends its schedule when its budget ends, however fast its steps are
    (the fair way to compare masked and unmasked training at equal wall-clock).
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if time_fraction is not None:
            progress = max(progress, time_fraction())
        progress = min(1.0, progress)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def mask_text_tokens(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, ratio: float, tokenizer, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace a fraction of real, non-special tokens by [MASK]. Returns (masked ids, targets with -100 elsewhere)."""
    special = torch.zeros_like(input_ids, dtype=torch.bool)
    for sid in tokenizer.all_special_ids:
        special |= input_ids == sid
    candidates = attention_mask.bool() & ~special
    chosen = (torch.rand(input_ids.shape, generator=generator) < ratio).to(input_ids.device) & candidates
    targets = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    return torch.where(chosen, torch.full_like(input_ids, tokenizer.mask_token_id), input_ids), targets


def train_step_losses(
    model: MedFLIP | DistributedDataParallel, batch: Batch, cfg: PretrainConfig, mask_ratio: float, step: int
) -> dict[str, torch.Tensor]:
    """Forward + all loss terms for one batch. Returns the weighted total under "loss" and each term."""
    core: MedFLIP = model.module if isinstance(model, DistributedDataParallel) else model
    lc = cfg.loss
    device = batch.images.device
    enc = core.tokenize(batch.texts)
    input_ids, attn = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    mlm_targets = None
    if cfg.train.text_mask_ratio > 0:
        gen = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + step)
        input_ids, mlm_targets = mask_text_tokens(
            input_ids, attn, cfg.train.text_mask_ratio, core.tokenizer, gen
        )
    with autocast_context(device, cfg.train.precision):
        out = model(batch.images, input_ids, attn, mask_ratio=mask_ratio, return_tokens=lc.beta_svd > 0)
    img_labels = batch.image_labels.to(device)
    txt_labels = batch.text_labels.to(device)
    # Contrast over the global batch (identity when not distributed); SVD over the local batch.
    terms = contrastive_losses(
        gather_with_grad(out.image_embeds),
        gather_with_grad(out.text_embeds),
        out.logit_scale,
        gather_no_grad(img_labels),
        gather_no_grad(txt_labels),
        lc,
    )
    total = terms["sm"] + lc.lambda_neg * terms.get("neg", 0.0)
    if lc.beta_svd > 0:
        _, y, y_t = soft_targets(img_labels, txt_labels, lc.tau_s)
        terms["svd"] = svd_loss(out.image_tokens, out.text_tokens, out.text_mask, y, y_t, lc.svd_tau)
        total = total + lc.beta_svd * terms["svd"]
    if lc.recon_weight > 0 and out.ids_keep is not None and core.decoder is not None:
        with autocast_context(device, cfg.train.precision):
            terms["recon"] = core.decoder.loss(batch.images, out.image_hidden, out.ids_keep)
        total = total + lc.recon_weight * terms["recon"]
    if mlm_targets is not None and core.mlm is not None and lc.mlm_weight > 0:
        sel = mlm_targets != -100
        if sel.any():
            logits = core.mlm(
                out.text_hidden[sel].float(), core.text.model.embeddings.word_embeddings.weight.float()
            )
            terms["mlm"] = torch.nn.functional.cross_entropy(logits, mlm_targets[sel])
            total = total + lc.mlm_weight * terms["mlm"]
    terms["loss"] = total
    terms["logit_scale"] = out.logit_scale.detach().exp()
    return terms


class MetricLog:
    """CSV of every logged step (and TensorBoard when installed)."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        rows = []
        if (
            resume_step is not None and path.is_file()
        ):  # drop rows an interrupted run logged past the checkpoint
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, LOG_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(path.parent / "tensorboard"))
        except ImportError:
            self.tb = None

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, LOG_COLUMNS, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and v != "":
                    tag = f"val/{k[4:]}" if k.startswith("val_") else f"train/{k}"
                    self.tb.add_scalar(tag, float(v), int(row["step"]))


def pretrain(
    model: MedFLIP,
    batches: DecoupledBatches,
    cfg: PretrainConfig,
    resume: bool | str | Path = False,
    progress: bool = True,
    overwrite: bool = False,
    validate=None,
) -> Path:
    """Train `model` for cfg.train.steps on `batches`; returns the run folder (final model in run/model).

    resume: True (the latest checkpoint of cfg.train.out) or a checkpoint path; overwrite: replace an
    earlier run's outputs in the folder (see medflip.train.rundir).
    validate: optional callable(model) -> {metric: value}, run on rank 0 every cfg.train.eval_every steps
    and at the end, outside the timed step (built by the command layer, e.g. zero-shot on a val split).
    """
    from tqdm.auto import tqdm

    tc = cfg.train
    run_dir = Path(tc.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = batches.device
    rank, world = init_distributed(device)
    torch.manual_seed(tc.seed + rank)
    model.to(device).train()
    optimizer = build_optimizer(model, cfg.optim)
    start, elapsed = 0, 0.0
    budget_s = tc.time_budget_min * 60
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine(
            tc.steps,
            cfg.optim.warmup_steps,
            cfg.optim.min_lr_ratio,
            time_fraction=(lambda: elapsed / budget_s) if budget_s > 0 else None,
        ),
    )
    ckpt, lock = open_run(run_dir, cfg, resume, overwrite, rank)  # lock; refuse mixing runs
    if ckpt is not None:
        load_model_state(ckpt, model)
        state = load_trainer_state(ckpt, optimizer, scheduler)
        start, elapsed = int(state["step"]), float(state["elapsed_s"])
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    log = MetricLog(run_dir / "log.csv", start if resume else None) if rank == 0 else None
    ddp_model = DistributedDataParallel(model) if world > 1 else model
    last_good = ckpt

    def checkpoint(step: int) -> None:
        nonlocal last_good
        if rank == 0:
            state = {
                "elapsed_s": elapsed,
                "epoch": batches.epoch_of(step),
                "seed": tc.seed,
                "config": dataclasses.asdict(cfg),
            }
            last_good = save_checkpoint(
                run_dir, step, model, optimizer, scheduler, state, tc.keep_checkpoints
            )

    if tc.budget_clock not in ("wall", "cpu"):
        raise UserError(f"train.budget_clock must be wall or cpu, got {tc.budget_clock!r}")
    clock = time.process_time if tc.budget_clock == "cpu" else time.perf_counter
    unmask_after_s = (1 - tc.unmasked_fraction) * budget_s if tc.unmasked_fraction > 0 else math.inf
    bar = tqdm(total=tc.steps, initial=start, disable=not progress or rank != 0, desc="pretrain", unit="step")
    pairs_per_s = 0.0
    for step in range(start, tc.steps):
        t0 = clock()
        masked = step < tc.steps - tc.unmasked_steps and elapsed < unmask_after_s
        batch = batches.batch(step)
        terms = train_step_losses(ddp_model, batch, cfg, tc.mask_ratio if masked else 0.0, step)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            bar.close()
            values = {k: round(float(v.detach()), 4) for k, v in terms.items()}
            where = (
                f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written yet"
            )
            raise TrainingDiverged(f"loss is not finite at step {step} ({values}); training stopped; {where}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = clock() - t0
        elapsed += dt
        rate = batches.batch_size * world / dt
        pairs_per_s = rate if step == start else 0.9 * pairs_per_s + 0.1 * rate
        done = step + 1
        bar.update(1)
        over_budget = budget_s > 0 and elapsed >= budget_s
        val = {}
        if validate is not None and tc.eval_every > 0 and rank == 0:
            if done % tc.eval_every == 0 or done == tc.steps or over_budget:
                val = {f"val_{k}": round(float(v), 5) for k, v in validate(model).items()}
        if done % tc.log_every == 0 or done == tc.steps or val:
            row = {k: round(float(v.detach()), 5) for k, v in terms.items()}
            row.update(val)
            row.update(
                step=done,
                epoch=batches.epoch_of(step),
                elapsed_s=round(elapsed, 3),
                lr=optimizer.param_groups[0]["lr"],
                pairs_per_s=round(pairs_per_s, 2),
            )
            bar.set_postfix(loss=f"{row['loss']:.3f}", pairs_s=f"{pairs_per_s:.1f}")
            if log is not None:
                log.write(row)
        if done % tc.ckpt_every == 0 or done == tc.steps or over_budget:
            checkpoint(done)
        if over_budget:
            break
    bar.close()
    if rank == 0:
        model.save_pretrained(run_dir / "model")
        lock.release()
    return run_dir
