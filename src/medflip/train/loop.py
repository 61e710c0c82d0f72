"""The pre-training loop: batch -> model -> loss -> step, with logging and step-exact checkpoints."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from medflip.data.streams import DecoupledBatches
from medflip.errors import UserError
from medflip.losses import MedFLIPObjective
from medflip.model.medflip import MedFLIP
from medflip.runtime import (
    adamw_param_groups,
    attention_kernel,
    autocast_context,
    resolve_device,
    warmup_cosine,
)
from medflip.train.checkpoint import load_model_state, load_trainer_state, save_checkpoint
from medflip.train.config import PretrainConfig
from medflip.train.distributed import init_distributed, step_agreement
from medflip.train.rundir import open_run
from medflip.train.step import TrainingForward, reseed_dropout, train_step_losses

__all__ = [
    "MetricLog",
    "TrainingDiverged",
    "autocast_context",  # re-exported for old imports; they live in medflip.runtime
    "build_optimizer",
    "pretrain",
    "resolve_device",
    "warmup_cosine",
]

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


def build_optimizer(model: MedFLIP, cfg) -> torch.optim.AdamW:
    """AdamW with groups {vision + heads at optim.lr, text tower + MLM head at optim.text_lr} x {decay, no decay}."""

    def lr_of(name: str) -> float:
        return cfg.text_lr if name.startswith(("text.", "mlm.")) else cfg.lr

    groups = adamw_param_groups(model.named_parameters(), lr_of, cfg.weight_decay)
    return torch.optim.AdamW(groups, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


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

    Under torchrun every rank calls this with the same arguments: it joins the process group, trains on its
    share of each global batch, and rank 0 alone writes the log, the checkpoints and the final model.

    validate: optional callable(model) -> {metric: value}, run on rank 0 every cfg.train.eval_every steps
    and at the end, outside the timed step (built by the command layer, e.g. zero-shot on a val split).
    """
    cfg = cfg.resolved()
    with attention_kernel(cfg.train.attention, batches.device):
        return _train(model, batches, cfg, resume, progress, overwrite, validate)


def _train(model, batches, cfg, resume, progress, overwrite, validate) -> Path:
    """`pretrain` with a resolved config, inside its attention kernel."""
    check_model_matches(model, cfg)
    tc = cfg.train
    run_dir = Path(tc.out)
    device = batches.device
    rank, world = init_distributed(device)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.loss.targets == "identity" and not batches.paired:
        raise UserError("loss.targets identity (CLIP) needs paired batches (each image with its own report)")
    if batches.batch_size % world:
        raise UserError(
            f"data.batch_size {batches.batch_size} (the global batch) is not divisible by the {world} processes"
        )
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
    ckpt, lock = open_run(run_dir, cfg, resume, overwrite, rank)  # lock (rank 0); refuse mixing runs
    if ckpt is not None:  # every rank reads the same checkpoint
        load_model_state(ckpt, model)
        state = load_trainer_state(ckpt, optimizer, scheduler)
        start, elapsed = int(state["step"]), float(state["elapsed_s"])
    log = None
    if rank == 0:
        (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        log = MetricLog(run_dir / "log.csv", start if resume else None)
    forward = TrainingForward(model)
    if world > 1:
        # Heads that sit out a step (the decoder on unmasked steps, the MLM head) leave parameters without
        # gradient: DDP must be told to look for them.
        unused = model.decoder is not None or model.mlm is not None
        ids = [device.index] if device.type == "cuda" else None
        forward = DistributedDataParallel(forward, device_ids=ids, find_unused_parameters=unused)
    objective = MedFLIPObjective(cfg.loss)
    last_good = ckpt

    def checkpoint(step: int) -> None:
        nonlocal last_good
        if rank == 0:
            state = {
                "elapsed_s": elapsed,
                "epoch": batches.epoch_of(step),
                "seed": tc.seed,
                "world_size": world,
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
    if rank == 0 and world > 1:
        bar.write(
            f"pretrain: {world} processes, {batches.batch_size // world} of each global batch of {batches.batch_size} per process"
        )
    pairs_per_s = 0.0
    for step in range(start, tc.steps):
        t0 = clock()
        masked = step < tc.steps - tc.unmasked_steps and elapsed < unmask_after_s  # elapsed is agreed
        batch = batches.batch(step, rank, world)
        reseed_dropout(tc.seed, step, rank)
        result = train_step_losses(forward, objective, batch, cfg, tc.mask_ratio if masked else 0.0, step)
        if not torch.isfinite(torch.tensor(result.terms["loss"])):  # a global value: every rank stops here
            bar.close()
            values = {k: round(v, 4) for k, v in result.terms.items()}
            where = (
                f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written yet"
            )
            raise TrainingDiverged(f"loss is not finite at step {step} ({values}); training stopped; {where}")
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        # The same clock on every rank (it drives the schedule and the budget) and the pairs all ranks did.
        dt, pairs = step_agreement(clock() - t0, len(batch.texts))
        elapsed += dt
        rate = pairs / dt
        pairs_per_s = rate if step == start else 0.9 * pairs_per_s + 0.1 * rate
        done = step + 1
        bar.update(1)
        over_budget = budget_s > 0 and elapsed >= budget_s  # elapsed is agreed: all ranks stop together
        val = {}
        if validate is not None and tc.eval_every > 0 and rank == 0:
            if done % tc.eval_every == 0 or done == tc.steps or over_budget:
                val = {f"val_{k}": round(float(v), 5) for k, v in validate(model).items()}
        if done % tc.log_every == 0 or done == tc.steps or val:
            row = {k: round(v, 5) for k, v in result.terms.items()}
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


def check_model_matches(model: MedFLIP, cfg: PretrainConfig) -> None:
    """The heads the loss weights need must exist (a missing one would be a silently skipped term)."""
    if cfg.loss.recon_weight > 0 and model.decoder is None:
        raise UserError(
            "loss.recon_weight > 0 but the model was built without a reconstruction decoder: build it from "
            "cfg.resolved().model (model.reconstruction_decoder true)"
        )
    if cfg.loss.mlm_weight > 0 and model.mlm is None:
        raise UserError(
            "loss.mlm_weight > 0 but the model was built without an MLM head: build it from "
            "cfg.resolved().model (model.mlm_head true)"
        )
