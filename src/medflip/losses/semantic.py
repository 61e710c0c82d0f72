"""Semantic soft targets and the contrastive terms of MedFLIP (paper Eq. 1-5 and 7; docs/method.md).

Every function takes features and label vectors only (already all-gathered under DDP), nothing about
the model or the data, so the same code serves one process and many.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_similarity(
    image_labels: torch.Tensor, text_labels: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Cosine similarity of label vectors: [N, K], [M, K] -> s [N, M] in [0, 1].

    An all-zero label vector has similarity 0 to everything (its norm is clamped by eps, not divided by 0).

    NaN marks an *unknown* dimension (an uncertain finding under `--loss.uncertain ignore`, see
    `medflip.observations.to_label_vector`). s_ij is then the cosine over the dimensions known in both
    a_i and b_j: a dimension uncertain in either vector is left out of that pair only, not of the batch.
    With known masks m (1 = known) and a, b zero where unknown, that is three matmuls:
        num = a @ b^T,  |a_i|^2 over b_j's known dims = (a^2) @ m_b^T,  |b_j|^2 over a_i's = m_a @ (b^2)^T.
    Without NaN this is exactly the plain cosine.
    """
    a = image_labels.float()
    b = text_labels.float()
    ma, mb = ~torch.isnan(a), ~torch.isnan(b)
    if bool(ma.all()) and bool(mb.all()):
        a = a / a.norm(dim=-1, keepdim=True).clamp(min=eps)
        b = b / b.norm(dim=-1, keepdim=True).clamp(min=eps)
        return a @ b.t()
    a, b = torch.where(ma, a, 0.0), torch.where(mb, b, 0.0)
    num = a @ b.t()
    a_sq = (a * a) @ mb.float().t()  # [N, M]: |a_i|^2 over the dims known in b_j
    b_sq = ma.float() @ (b * b).t()  # [N, M]: |b_j|^2 over the dims known in a_i
    return num / (a_sq.sqrt().clamp(min=eps) * b_sq.sqrt().clamp(min=eps))


def soft_targets(
    image_labels: torch.Tensor | None, text_labels: torch.Tensor | None, tau_s: float, n: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (s [N, M], y [N, M] rows sum to 1 over texts, y' [M, N] rows sum to 1 over images).

    y_ij = softmax_j(s_ij / tau_s), y'_ji = softmax_i(s_ij / tau_s). Without labels (paired data) the
    targets are the identity: CLIP's one-hot targets, and s = I.
    """
    if image_labels is None or text_labels is None:
        if n is None:
            raise ValueError("identity targets need the batch size n")
        eye = torch.eye(n)
        return eye, eye, eye
    s = label_similarity(image_labels, text_labels)
    y = F.softmax(s / tau_s, dim=1)
    y_t = F.softmax(s.t() / tau_s, dim=1)
    return s, y, y_t


def _fp32_or_better(x: torch.Tensor) -> torch.Tensor:
    """Losses run in float32 under bf16 autocast, and keep float64 when given it (gradcheck)."""
    return x if x.dtype == torch.float64 else x.float()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean_i  -sum_j targets_ij * log_softmax_j(logits_ij)."""
    return -(targets * F.log_softmax(_fp32_or_better(logits), dim=1)).sum(1).mean()


def semantic_matching_loss(logits: torch.Tensor, y: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
    """L_sm = 1/2 [CE(y, softmax_j z) + CE(y', softmax_i z)]. logits z: [N, M]."""
    return 0.5 * (soft_cross_entropy(logits, y) + soft_cross_entropy(logits.t(), y_t))


def negative_suppression_loss(logits: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """L_neg = -1/N sum_i sum_{j != i} (1 - s_ij) log(1 - yhat_ij), yhat = softmax_j(z).

    The printed Eq. 7 has the opposite sign, which would pull negatives together (docs/method.md, deviation 1). Weighting by
    label dissimilarity (1 - s) leaves false negatives (same findings, different study) alone.
    p is clamped at 1 - 1e-6 so log(1 - p) stays finite when a logit dominates its row.
    """
    z = _fp32_or_better(logits)
    n, m = z.shape
    p = F.softmax(z, dim=1)
    log_one_minus_p = torch.log1p(-p.clamp(max=1 - 1e-6))
    weight = (1.0 - s.to(z)).clamp(min=0.0)
    if n == m:
        weight = weight * (1.0 - torch.eye(n, device=z.device, dtype=z.dtype))
    return -(weight * log_one_minus_p).sum() / n
