"""One training step's forward: tokenize -> model forward (with the MAE / MLM heads) -> objective.

Everything random in a step is drawn for the whole global batch from (seed, step) and sliced to this rank's
rows, so it does not depend on the number of processes:
- texts are tokenized as the global batch (same padding length as one process), then sliced;
- MLM masks: one generator seeded by (seed, step) over the global [B, T] token grid;
- patch-masking noise: [B, L] uniform noise from a generator seeded by (seed, step), row i for sample i.
Dropout is the one exception (torch's global RNG, reseeded per (seed, step, rank) so a resume is exact).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from medflip.data.streams import Batch
from medflip.losses import MedFLIPObjective, ObjectiveResult
from medflip.model.medflip import MedFLIP, MedFLIPOutput
from medflip.runtime import autocast_context

NOISE_STREAM, DROPOUT_STREAM = 4, 5  # numpy SeedSequence streams (0-3 are the data's)


def step_generator(seed: int, stream: int, step: int) -> torch.Generator:
    """A CPU generator that is a pure function of (seed, stream, step)."""
    value = int(np.random.default_rng([seed, stream, step]).integers(2**62))
    return torch.Generator().manual_seed(value)


def reseed_dropout(seed: int, step: int, rank: int) -> None:
    """Dropout draws from torch's global RNG: make it a function of (seed, step, rank), so a resumed run
    continues bit-identically without per-rank RNG states in the checkpoint."""
    torch.manual_seed(int(np.random.default_rng([seed, DROPOUT_STREAM, step, rank]).integers(2**62)))


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


@dataclass
class TrainingOutput(MedFLIPOutput):
    """The model's output plus what its optional heads produced (declared fields: DDP looks for tensors in
    dataclass fields to find which parameters a step used)."""

    recon_pred: torch.Tensor | None = None  # [n, L, P] decoder prediction of every patch
    recon_target: torch.Tensor | None = None  # [n, L, P] per-patch-normalised pixels
    recon_mask: torch.Tensor | None = None  # [n, L] 1 = masked patch
    mlm_logits: torch.Tensor | None = None  # [s, vocab] at this rank's s masked tokens
    mlm_targets: torch.Tensor | None = None  # [s] token ids


class TrainingForward(nn.Module):
    """MedFLIP plus its optional heads in one forward, so DDP sees every parameter used in a step.

    Returns a TrainingOutput: the MedFLIPOutput plus, when the heads run, the decoder's and MLM head's outputs.
    """

    def __init__(self, model: MedFLIP):
        super().__init__()
        self.model = model

    def forward(
        self,
        images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mask_ratio: float,
        mask_noise: torch.Tensor | None,
        mlm_targets: torch.Tensor | None,
        return_tokens: bool,
        run_decoder: bool = True,
        run_mlm: bool = True,
    ) -> TrainingOutput:
        m = self.model
        base = m(
            images, input_ids, attention_mask, mask_ratio, return_tokens=return_tokens, mask_noise=mask_noise
        )
        out = TrainingOutput(**{f.name: getattr(base, f.name) for f in fields(base)})
        # A head runs only when its term is weighted: DDP must not find outputs in this return value that the
        # loss does not use, or it waits for gradients that never come.
        if run_decoder and m.decoder is not None and out.ids_keep is not None:
            out.recon_pred = m.decoder(out.image_hidden, out.ids_keep)
            out.recon_target = m.decoder.target(images)
            out.recon_mask = m.decoder.masked(out.ids_keep, out.recon_target.shape[1])
        if mlm_targets is not None:
            sel = mlm_targets != -100
            out.mlm_targets = mlm_targets[sel]
            if m.mlm is not None and run_mlm:
                words = m.text.model.embeddings.word_embeddings.weight
                out.mlm_logits = m.mlm(out.text_hidden[sel].float(), words.float())
        return out


def step_inputs(core: MedFLIP, batch: Batch, cfg, step: int, mask_ratio: float, device: torch.device) -> dict:
    """Tokens, MLM targets and masking noise of this rank's rows, drawn for the global batch and sliced."""
    tc = cfg.train
    rows = batch.rows
    enc = core.tokenize(batch.global_texts)  # the global batch: padding as in one process
    input_ids, attn = enc["input_ids"], enc["attention_mask"]
    mlm_targets = None
    if tc.text_mask_ratio > 0:
        gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + step)
        input_ids, mlm_targets = mask_text_tokens(input_ids, attn, tc.text_mask_ratio, core.tokenizer, gen)
        mlm_targets = mlm_targets[rows].to(device)
    noise = None
    if mask_ratio > 0:
        length = core.vision.num_patches
        gen = step_generator(tc.seed, NOISE_STREAM, step)
        noise = torch.rand(batch.global_batch_size, length, generator=gen)[rows].to(device)
    return {
        "images": batch.images.to(device),
        "input_ids": input_ids[rows].to(device),
        "attention_mask": attn[rows].to(device),
        "mask_ratio": mask_ratio,
        "mask_noise": noise,
        "mlm_targets": mlm_targets,
        "return_tokens": cfg.loss.beta_svd > 0,
        "run_decoder": cfg.loss.recon_weight > 0,
        "run_mlm": cfg.loss.mlm_weight > 0,
    }


def train_step_losses(
    model: TrainingForward | nn.Module,
    objective: MedFLIPObjective,
    batch: Batch,
    cfg,
    mask_ratio: float,
    step: int,
) -> ObjectiveResult:
    """Forward + objective for this rank's share of step `step`. `model`: a TrainingForward (or its DDP wrapper)."""
    inner = model.module if hasattr(model, "module") else model
    core: MedFLIP = inner.model
    device = core.device
    inputs = step_inputs(core, batch, cfg, step, mask_ratio, device)
    with autocast_context(device, cfg.train.precision):
        out = model(**inputs)
    return objective(out, batch.image_labels.to(device), batch.text_labels.to(device))
