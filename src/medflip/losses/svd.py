"""SVD loss (paper Eq. 6; docs/method.md): contrast on the top singular value of patch x word similarities.

For image i and text j, M_ij = P_i T_j^T / sqrt(n_v n_t) with P_i [n_v, E] the normalised projected visible
patches and T_j [n_t, E] the normalised projected real tokens. sigma_ij = sigma_1(M_ij) in [0, 1] measures
the dominant linear correlation between the image's regions and the text's words.

N*M top singular values must be cheap. We never run an SVD:
1. (no grad) For each pair, the Gram matrix of M on its small side (n_t x n_t, or n_v x n_v) is raised to
   the power 2^k by repeated squaring (trace-normalised), which isolates the top eigenvector with error
   ratio (sigma_2 / sigma_1)^(2^(k+1)); two plain power steps polish it. Images are processed in chunks so
   the [chunk, M, n_v, n_t] similarity tensor stays small.
2. (with grad) sigma = ||M v|| with v the detached top right-singular vector, evaluated in factored form
   ||P_i (T_j^T v)||: nothing of size n_v x n_t is kept for backward. Since v is a stationary point of
   ||M v|| / ||v||, d sigma = u^T dM v, the exact gradient of sigma_1.
"""

from __future__ import annotations

import torch

from medflip.losses.semantic import semantic_matching_loss

_CHUNK_ELEMENTS = 1 << 25  # ~128 MB of float32 per chunk of the similarity tensor


@torch.no_grad()
def _top_vectors(
    p: torch.Tensor, t: torch.Tensor, text_side: bool, squarings: int, polish: int
) -> torch.Tensor:
    """p: [N, V, E], t: [M, L, E] (padding zeroed) -> unit top singular vectors [N, M, L] (text side) or [N, M, V]."""
    n, v_len, _ = p.shape
    m, l_len, _ = t.shape
    chunk = max(1, _CHUNK_ELEMENTS // max(1, m * v_len * l_len))
    out = []
    for start in range(0, n, chunk):
        s = torch.einsum("nve,mle->nmvl", p[start : start + chunk], t)  # [c, M, V, L]
        g = s.transpose(-1, -2) @ s if text_side else s @ s.transpose(-1, -2)  # Gram on the chosen side
        b = g
        for _ in range(squarings):
            b = b / b.diagonal(dim1=-2, dim2=-1).sum(-1).clamp(min=1e-30)[..., None, None]
            b = b @ b
        # b ~ u u^T: its column with the largest diagonal entry is the most reliable multiple of u.
        k = b.diagonal(dim1=-2, dim2=-1).argmax(-1)
        vec = torch.gather(b, -1, k[..., None, None].expand(*b.shape[:-1], 1)).squeeze(-1)
        vec = vec / vec.norm(dim=-1, keepdim=True).clamp(min=1e-30)
        for _ in range(polish):
            vec = (g @ vec.unsqueeze(-1)).squeeze(-1)
            vec = vec / vec.norm(dim=-1, keepdim=True).clamp(min=1e-30)
        out.append(vec)
    return torch.cat(out)


def top_singular_values(
    image_tokens: torch.Tensor,
    text_tokens: torch.Tensor,
    text_mask: torch.Tensor,
    squarings: int = 8,
    polish: int = 2,
) -> torch.Tensor:
    """sigma_1 of M_ij for every image i and text j.

    image_tokens: [N, V, E], text_tokens: [M, L, E], text_mask: [M, L] (1 = real token) -> sigma [N, M].
    Computed in float32 (float64 if the inputs are float64), whatever the autocast dtype.
    """
    dtype = torch.float64 if image_tokens.dtype == torch.float64 else torch.float32
    p = image_tokens.to(dtype)
    mask = text_mask.to(dtype)
    t = text_tokens.to(dtype) * mask.unsqueeze(-1)
    v_len, l_len = p.shape[1], t.shape[1]
    text_side = l_len <= v_len  # power-iterate on the smaller Gram matrix
    vec = _top_vectors(p.detach(), t.detach(), text_side, squarings, polish)
    if text_side:
        w = torch.einsum("nml,mle->nme", vec, t)  # T_j^T v   [N, M, E]
        mv = torch.einsum("nve,nme->nmv", p, w)  # P_i (T_j^T v)   [N, M, V]
    else:
        w = torch.einsum("nmv,nve->nme", vec, p)  # P_i^T u
        mv = torch.einsum("mle,nme->nml", t, w)  # T_j (P_i^T u)
    scale = torch.rsqrt(v_len * mask.sum(1).clamp(min=1.0))  # 1 / sqrt(n_v n_t_j)   [M]
    return mv.norm(dim=-1) * scale[None, :]


def svd_loss(
    image_tokens: torch.Tensor,
    text_tokens: torch.Tensor,
    text_mask: torch.Tensor,
    y: torch.Tensor,
    y_t: torch.Tensor,
    tau: float = 0.07,
) -> torch.Tensor:
    """L_svd = 1/2 [CE(y, softmax_j(sigma / tau)) + CE(y', softmax_i(sigma / tau))]."""
    sigma = top_singular_values(image_tokens, text_tokens, text_mask)
    return semantic_matching_loss(sigma / tau, y.to(sigma.device), y_t.to(sigma.device))
