"""MedFLIP losses (docs/method.md, "Losses"): semantic matching, negative suppression, SVD; optional MAE / MLM terms live
with their heads in medflip.model and are weighted here."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medflip.losses.semantic import (
    label_similarity,
    negative_suppression_loss,
    semantic_matching_loss,
    soft_targets,
)
from medflip.losses.svd import svd_loss, top_singular_values

__all__ = [
    "LossConfig",
    "contrastive_losses",
    "label_similarity",
    "negative_suppression_loss",
    "semantic_matching_loss",
    "soft_targets",
    "svd_loss",
    "top_singular_values",
]


@dataclass
class LossConfig:
    tau_s: float = (
        1.0  # soft-target temperature: 1 (the paper's) won on a real validation split (docs/results.md)
    )
    lambda_neg: float = 1.0  # negative-suppression weight (0 disables)
    beta_svd: float = 0.1  # SVD-loss weight (0 disables)
    svd_tau: float = 0.07  # temperature of the SVD logits
    recon_weight: float = 0.0  # MAE reconstruction term (needs mask_ratio > 0)
    mlm_weight: float = 0.0  # MLM term (needs train.text_mask_ratio > 0)
    uncertain: str = "positive"  # uncertain label policy: positive | negative | ignore


def contrastive_losses(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    image_labels: torch.Tensor | None,
    text_labels: torch.Tensor | None,
    cfg: LossConfig,
) -> dict[str, torch.Tensor]:
    """L_sm and L_neg from (possibly all-gathered) features [N, E], [M, E] and labels [N, K], [M, K]."""
    logits = logit_scale.exp() * image_embeds.float() @ text_embeds.float().t()
    s, y, y_t = soft_targets(image_labels, text_labels, cfg.tau_s, n=logits.shape[0])
    s, y, y_t = s.to(logits.device), y.to(logits.device), y_t.to(logits.device)
    out = {"sm": semantic_matching_loss(logits, y, y_t)}
    if cfg.lambda_neg:
        out["neg"] = negative_suppression_loss(logits, s)
    return out
