"""MedFLIP losses: semantic matching, negative suppression, SVD, and the objective that combines them with the
optional MAE / MLM terms over one or many processes (`MedFLIPObjective`)."""

from __future__ import annotations

from dataclasses import dataclass

from medflip.losses.objective import Comm, MedFLIPObjective, ObjectiveResult, SimulatedWorld
from medflip.losses.semantic import (
    label_similarity,
    negative_suppression_loss,
    semantic_matching_loss,
    soft_targets,
)
from medflip.losses.svd import svd_loss, top_singular_values

__all__ = [
    "Comm",
    "LossConfig",
    "MedFLIPObjective",
    "ObjectiveResult",
    "SimulatedWorld",
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
    recon_weight: float = 0.0  # MAE reconstruction term (needs train.mask_ratio > 0)
    mlm_weight: float = 0.0  # MLM term (needs train.text_mask_ratio > 0)
    uncertain: str = "positive"  # uncertain label policy: positive | negative | ignore
    # labels: MedCLIP soft targets from report labels | identity: CLIP (paired data: each image's own report)
    targets: str = "labels"
    # each rank computes only its own rows (its images vs all texts, its texts vs all images): the same
    # gradient as the full loss, at n_local x N_global cost per rank instead of N_global^2 (docs/method.md)
    local_loss: bool = True
