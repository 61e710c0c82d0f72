"""Tiny pre-training runs for tests/test_distributed.py, launched in real processes by torchrun
(`python -m torch.distributed.run --nproc_per_node 2 tests/dist_worker.py JOB...`) or called in-process.

A JOB is `OUT[:local|global][:resume][:fail=STEP][:cuda]`: pretrain 6 steps into OUT with local or global loss,
resuming from OUT's last checkpoint, with rank 1 raising at step STEP (to test that the group ends), or on
this rank's GPU with bf16 autocast (scripts/gpu_check.sh).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medflip.data.augment import AugmentConfig
from medflip.data.streams import DecoupledBatches, TextCorpus
from medflip.model.medflip import MedFLIP
from medflip.runtime import resolve_device
from medflip.train import loop
from medflip.train.config import PretrainConfig

K = 14
BATCH = 8
WORDS = "left right small large mild severe basal apical bilateral patchy new stable".split()


def tiny_config(out, steps: int = 6, local_loss: bool = True) -> PretrainConfig:
    """Every term on: masking, SVD, MAE reconstruction, MLM; FLIP's unmasked tuning on the last step."""
    cfg = PretrainConfig()
    cfg.model.vision.size = "tiny"
    cfg.model.vision.image_size = 32
    cfg.model.embed_dim = 32
    cfg.model.text.freeze_layers = 5  # the top layer of MiniLM trains
    cfg.data.batch_size = BATCH
    cfg.train.steps = steps
    cfg.train.log_every = 1
    cfg.train.ckpt_every = 2
    cfg.train.mask_ratio = 0.5
    cfg.train.unmasked_steps = 1  # the last step unmasked: the MAE decoder sits out (DDP find_unused_parameters)
    cfg.train.text_mask_ratio = 0.3
    cfg.train.precision = "fp32"
    cfg.train.device = "cpu"
    cfg.train.out = str(out)
    cfg.loss.recon_weight = 0.5
    cfg.loss.mlm_weight = 0.5
    cfg.loss.local_loss = local_loss
    cfg.optim.warmup_steps = 1
    return cfg


def tiny_batches(cfg: PretrainConfig, n: int = 24, device: str | torch.device = "cpu") -> DecoupledBatches:
    """n random 40 px images with one finding each; sentences of different lengths (padding matters)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 40, 40), dtype=np.uint8)
    labels = np.zeros((n, K), np.float32)
    labels[np.arange(n), rng.integers(0, K, n)] = 1
    sentences = [
        [" ".join(rng.choice(WORDS, rng.integers(1, 9))) + f" finding {i}" for _ in range(2)]
        for i in range(n)
    ]
    corpus = TextCorpus(
        [" ".join(s) for s in sentences],
        sentences,
        [np.repeat(labels[i : i + 1], 2, 0) for i in range(n)],
        labels,
    )
    return DecoupledBatches(
        images,
        labels,
        corpus,
        cfg.data.batch_size,
        cfg.model.vision.image_size,
        seed=cfg.train.seed,
        augment=AugmentConfig(),
        device=device,
    )


def tiny_model(cfg: PretrainConfig) -> MedFLIP:
    """The same initial weights in every process; dropout off (it draws from a per-rank RNG stream, the one
    random thing that is not defined per global sample)."""
    torch.manual_seed(0)
    model = MedFLIP(cfg.resolved().model)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def run_job(job: str) -> Path:
    out, *flags = job.split(":")
    cfg = tiny_config(out, local_loss="global" not in flags)
    device: str | torch.device = "cpu"
    if "cuda" in flags:  # scripts/gpu_check.sh: this rank's GPU (LOCAL_RANK), bf16 autocast
        cfg.train.device, cfg.train.precision = "auto", "auto"
        device = resolve_device("auto")
    fail = next((int(f.split("=")[1]) for f in flags if f.startswith("fail=")), None)
    real_step = loop.train_step_losses
    rank = int(os.environ.get("RANK", "0"))
    losses = {}

    def step_hook(model, objective, batch, cfg_, mask_ratio, step):
        if step == fail and rank == 1:
            Path(out, "failed_at").write_text(str(time.time()))
            raise RuntimeError(f"injected failure on rank 1 at step {step}")
        result = real_step(model, objective, batch, cfg_, mask_ratio, step)
        losses[step] = result.terms  # unrounded global values (log.csv rounds to 5 decimals)
        if rank == 0:
            Path(out, "losses.json").write_text(json.dumps(losses))
        return result

    loop.train_step_losses = step_hook
    try:
        batches = tiny_batches(cfg, device=device)
        return loop.pretrain(tiny_model(cfg), batches, cfg, resume="resume" in flags, progress=False)
    finally:
        loop.train_step_losses = real_step


def main(jobs: list[str]) -> None:
    torch.set_num_threads(1)
    for job in jobs:
        run_job(job)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
